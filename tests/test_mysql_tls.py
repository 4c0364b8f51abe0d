"""TLS to MariaDB (URL options ``ssl=required``, ``ssl_ca``, ``ssl=preferred``) against a private
mariadbd that has a certificate, and ``ssl=required`` against one that has none.

The certificates are made here with the ``openssl`` command: a CA, and a server certificate for
127.0.0.1 (subjectAltName IP) signed by it; a second CA signs nothing and must not be trusted.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from mysql_support import REPO, free_port, server_url, unavailable

from xcap_wsgi.storage import DocumentKey, StoreUnavailable
from xcap_wsgi.storage.mysql import MySQLStore, initdb

pytestmark = pytest.mark.mysql

ALICE = DocumentKey("alice", "example.com", "/xcap-root/resource-lists/users/sip:alice@example.com/index", 4)


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(folder) -> None:
    """ca.pem, server-cert.pem/server-key.pem (127.0.0.1, signed by ca.pem), other-ca.pem."""
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=xcap-wsgi test {ca}",
                 "-keyout", f"{ca}-key.pem", "-out", f"{ca}.pem", cwd=folder)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server-key.pem", "-out", "server.csr", cwd=folder)
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
             "-days", "2", "-extfile", "san.ext", "-out", "server-cert.pem", cwd=folder)


@pytest.fixture
def tls_mariadb(tmp_path):
    """The URL of a private mariadbd with a certificate for 127.0.0.1, and the certificates' folder."""
    server_url()  # MySQL tests are enabled
    if not shutil.which("mariadbd") and not os.path.exists("/usr/sbin/mariadbd"):
        unavailable("mariadbd is not installed")
    if not shutil.which("openssl"):
        unavailable("the openssl command is not installed")
    certs = tmp_path / "certs"
    certs.mkdir()
    _certificates(certs)
    script, datadir = str(REPO / ".ci" / "mariadb.sh"), tmp_path / "db"
    env = {**os.environ, "MARIADBD_EXTRA_ARGS": f"--ssl-ca={certs / 'ca.pem'} --ssl-cert={certs / 'server-cert.pem'} "
                                                f"--ssl-key={certs / 'server-key.pem'}"}
    out = subprocess.run(["bash", script, "start", str(datadir), str(free_port())], check=True, capture_output=True,
                         text=True, timeout=120, env=env)
    try:
        url = out.stdout.strip().splitlines()[-1]
        initdb(url)
        yield url, certs
    finally:
        subprocess.run(["bash", script, "stop", str(datadir)], check=False, timeout=60)


def _cipher(store: MySQLStore) -> str:
    def work(cursor):
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        return cursor.fetchone()[1]

    return store._db.run(work)


@pytest.mark.parametrize("query", ["ssl=required", "ssl_ca={ca}", "ssl=required&ssl_ca={ca}", "ssl=preferred"])
def test_tls_modes_encrypt_the_connection(tls_mariadb, query):
    url, certs = tls_mariadb
    store = MySQLStore.from_url(f"{url}?{query.format(ca=certs / 'ca.pem')}&connect_timeout=5")
    try:
        etag = store.put(ALICE, b"<r/>", None)
        assert store.get(ALICE).etag == etag
        assert _cipher(store)  # TLS in use: MariaDB names the cipher
    finally:
        store.close()


def test_the_default_is_plain_text_as_kamailio(tls_mariadb):
    url, _ = tls_mariadb
    store = MySQLStore.from_url(url)
    try:
        assert _cipher(store) == ""
    finally:
        store.close()


def test_a_certificate_from_another_ca_is_refused(tls_mariadb):
    url, certs = tls_mariadb
    store = MySQLStore.from_url(url + f"?ssl_ca={certs / 'other-ca.pem'}&connect_timeout=5", check_schema=False)
    try:
        with pytest.raises(StoreUnavailable, match="(?i)certificate"):
            store.get(ALICE)
    finally:
        store.close()
