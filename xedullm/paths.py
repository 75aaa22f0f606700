"""Where xedullm keeps things on this computer (platformdirs knows each system's convention).

``XEDULLM_HOME`` puts everything under one folder instead (tests, portable installs).
"""
from __future__ import annotations

import os
from pathlib import Path

APP = "xedullm"


def config_dir() -> Path:
    """Keys and preferences: %APPDATA%\\xedullm, ~/Library/Application Support/xedullm, ~/.config/xedullm."""
    override = os.environ.get("XEDULLM_HOME")
    if override:
        return Path(override).expanduser()
    import platformdirs

    # roaming: a school account that moves between PCs keeps its keys
    return Path(platformdirs.user_config_dir(APP, appauthor=False, roaming=True))


def server_data_dir() -> Path:
    """The classroom server's ledger and settings: the user's data directory + xedullm/server."""
    override = os.environ.get("XEDULLM_HOME")
    if override:
        return Path(override).expanduser() / "server"
    import platformdirs

    return Path(platformdirs.user_data_dir(APP, appauthor=False)) / "server"


def models_dir() -> Path:
    """Local model files (.gguf): ``XEDULLM_MODELS_DIR`` (a folder a computer room shares), else
    ``XEDULLM_HOME``/models, else the user's data directory + xedullm/models."""
    shared = os.environ.get("XEDULLM_MODELS_DIR")
    if shared:
        return Path(shared).expanduser()
    override = os.environ.get("XEDULLM_HOME")
    if override:
        return Path(override).expanduser() / "models"
    import platformdirs

    return Path(platformdirs.user_data_dir(APP, appauthor=False)) / "models"
