"""Fax rendering: documents into fax TIFF pages (the renderer follows); page counts."""
