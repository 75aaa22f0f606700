"""Local models as data and files: the catalog, what is installed, and pulling one.

``import xedullm.models`` stays light (standard library only); ``xedullm.models.pull`` (HTTP
client, hub protocols) is imported only by those who fetch a model.
"""
from .local_catalog import LOCAL_MODELS, LocalModel, find_local_model, local_model_names
from .installed import InstalledModel, default_local_model, find_model_file, installed_models


__all__ = ["InstalledModel", "LOCAL_MODELS", "LocalModel", "default_local_model", "find_local_model",
           "find_model_file", "installed_models", "local_model_names"]
