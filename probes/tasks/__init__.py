"""VALUE tasks: which cache, which feature views, which probes, which figures."""
