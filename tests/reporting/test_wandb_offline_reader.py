"""The offline W&B log reader: records split over 32 KiB blocks, and a log still being written."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

from vlprobe.reporting.wandb_offline import read_offline_run, wait_for_exit

BLOCK = 32 * 1024


def _log(payloads: list[bytes]) -> bytes:
    """The LevelDB log layout (written independently of the reader): blocks counted from the
    file start, a block tail under 7 bytes zero-filled, longer records split FIRST/MIDDLE/LAST."""
    data = bytearray(b":W&B\xbe\xe1\x00")
    for rest in payloads:
        first = True
        while True:
            left = BLOCK - len(data) % BLOCK
            if left < 7:
                data += bytes(left)
                continue
            chunk, rest = rest[: left - 7], rest[left - 7 :]
            kind = (1 if first else 4) if not rest else (2 if first else 3)
            data += b"\0\0\0\0" + struct.pack("<HB", len(chunk), kind) + chunk
            first = False
            if not rest:
                break
    return bytes(data)


def _summary(**values: object) -> bytes:
    record = pb.Record()
    for key, value in values.items():
        record.summary.update.add(key=key, value_json=json.dumps(value))
    return record.SerializeToString()


def _filler(room: int) -> bytes:
    """A first record after which block 0 has ``room`` bytes left."""
    size = BLOCK - 7 - 7 - room
    payload = _summary(filler="x" * size)
    return _summary(filler="x" * (2 * size - len(payload)))


def _exit() -> bytes:
    record = pb.Record()
    record.exit.exit_code = 0
    return record.SerializeToString()


def test_records_split_over_blocks_and_the_exit_record(tmp_path: Path) -> None:
    big = _summary(big="y" * (BLOCK + 5000))  # FIRST, MIDDLE, LAST
    last = _summary(**{"best/identification/test_acc": 0.95})
    data = _log([_filler(room=20), last, big, last, _exit()])
    assert data[BLOCK - 20 + 6] == 2 and data[BLOCK + 6] == 4  # `last` is split at the boundary
    (tmp_path / "run-abc.wandb").write_bytes(data)
    run = read_offline_run(tmp_path)
    assert run.summary["best/identification/test_acc"] == 0.95
    assert len(run.summary["big"]) == BLOCK + 5000 and run.exited


def test_log_before_wandb_core_writes_its_last_block(tmp_path: Path) -> None:
    """wandb-core writes whole blocks and the last partial one only on close, after
    ``wandb.finish()`` returned: the summary in that block is not there yet."""
    data = _log([_filler(room=3), _summary(**{"best/acc": 0.95}), _exit()])
    log = tmp_path / "run-abc.wandb"
    assert data[BLOCK - 3 : BLOCK + 4] == bytes(7) and data[BLOCK + 6] == 1  # 0-tail, FULL
    for cut, summary in ((BLOCK, {}), (len(data) - 3, {"best/acc": 0.95})):  # half an exit
        log.write_bytes(data[:cut])
        run = read_offline_run(tmp_path)
        assert run.summary.keys() - {"filler"} == summary.keys() and not run.exited
        assert wait_for_exit(tmp_path, timeout=0.1) is False
    log.write_bytes(data)
    assert wait_for_exit(tmp_path, timeout=0.1) is True
    assert read_offline_run(tmp_path).summary["best/acc"] == 0.95
