"""veto-opa: runtime authorization for LLM tool calls, decided by Open Policy Agent."""

from __future__ import annotations

__version__ = "0.1.0"
