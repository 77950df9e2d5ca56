"""How exports reach lienthong from each library: drop folder, HTTP(S), SFTP, OAI-PMH.

Each transport downloads into the library's workspace under the landing root and returns the local file to
ingest; credentials come only from the Airflow connection the registry names (see :mod:`.connections`).
"""
from lienthong.transports.base import FetchError, SourceError

__all__ = ["FetchError", "SourceError"]
