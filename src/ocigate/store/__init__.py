"""Storage backends implementing :class:`ocigate.registry.Registry`, one subpackage each; import
the one you use (``ocigate.store.embedded``, ``.memory``, ``.upstream``, ``.cache``, ``.gateway``),
so that importing one loads none of the others."""
