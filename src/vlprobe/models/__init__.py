"""Model adapters: frozen Hugging Face models behind one interface (see ``base``).

Import ``vlprobe.models.registry`` for ``build_adapter``; this package stays import-light.
"""
