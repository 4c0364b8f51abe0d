"""Kamailio 5.6's facts about its ``xcap`` table, stated once and imported everywhere else.

Column limits come from ``pr_xcap.xml`` (see ``kamailio_ddl.py``, which holds the DDL text);
``doc_type`` numbers are Kamailio's ``xcap_server`` AUID table (``xcap_misc.c``), read by
presence_xml (2, 16), rls (4, 8) and utils (2). See ``shared/spec/kamailio-contract.md``.
"""

from __future__ import annotations

#: Characters of ``username`` and ``domain`` (VARCHAR(64)) and ``doc_uri`` (VARCHAR(255)).
MAX_USERNAME = 64
MAX_DOMAIN = 64
MAX_DOC_URI = 255
COLUMN_LIMITS = {"username": MAX_USERNAME, "domain": MAX_DOMAIN, "doc_uri": MAX_DOC_URI}

#: The ``etag`` column is VARCHAR(128), but Kamailio formats ``ETag: "<db etag>"\r\n`` into a
#: 128-byte buffer: 117 characters at most.
ETAG_COLUMN = 128
MAX_ETAG_LENGTH = 117

#: ``doc`` is a MEDIUMBLOB: at most 2**24 - 1 bytes.
MAX_DOCUMENT_BYTES = 2**24 - 1

#: The version Kamailio's modules require in the ``version`` row for table ``xcap``.
XCAP_TABLE_VERSION = 4

#: ``doc_type`` of each application usage, as Kamailio numbers them.
PRES_RULES = 2
RESOURCE_LISTS = 4
RLS_SERVICES = 8
PIDF_MANIPULATION = 16
XCAP_CAPS = 32  # computed, never stored
OMA_USER_PROFILE = 64
OMA_PRES_CONTENT = 128
OMA_XCAP_DIRECTORY = 512  # computed, never stored
