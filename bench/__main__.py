"""``python -m bench``: run every benchmark."""

from bench import catalog

catalog.main()
