"""Model adapters: frozen Hugging Face models behind one interface (see ``base``).

Each ``configs/model/*.yaml`` names its adapter's builder as ``_target_`` (e.g.
``vlprobe.models.visualbert.VisualBertAdapter.build``); this package stays import-light.
"""
