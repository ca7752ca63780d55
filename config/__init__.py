"""What ai4lab ships besides code: the bundled catalog (modules and tools), the JupyterHub
config file, Nomad job defaults, page templates and the module template.

A package (``ai4lab.config``, from the source tree's ``config/``) so that a wheel carries it
and :func:`ai4lab.core.runtime.shipped` finds it in a checkout and an install alike.
"""
