"""Compatibility shim: ``from XEdu.LLM import Client`` runs XEduLLM programs on xedullm.

There is deliberately no ``XEdu/__init__.py``: ``XEdu`` stays a namespace package so this
does not clobber other XEdu packages installed beside it.
"""
from xedullm import *  # noqa: F401,F403
from xedullm import Client, __all__  # noqa: F401
