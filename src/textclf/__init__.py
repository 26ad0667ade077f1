"""textclf: keep text classifiers fresh. The library; it never imports prefect."""

__version__ = "0.1.0"
