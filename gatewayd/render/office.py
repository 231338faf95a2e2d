"""LibreOffice, for office documents (Word, Excel, PowerPoint, OpenDocument, RTF).

Office documents are accepted only when LibreOffice is installed: ``fax.libreoffice``
names its ``soffice``, or it is looked for on PATH.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from gatewayd.config.settings import FaxSettings


def find_soffice(settings: FaxSettings) -> Path | None:
    if settings.libreoffice:
        path = Path(settings.libreoffice)
        return path if path.is_file() else None
    for name in ("soffice", "libreoffice"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return None
