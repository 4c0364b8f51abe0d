"""XCAP URI parsing (RFC 4825 §6): document selector, ~~ separator, xmlns() query, XUI mapping."""

from __future__ import annotations

import pytest

from xcap_wsgi.uri import URIError, canonical_xui, match_root, parse_xcap_path, parse_xmlns_query, xui_account


def parse(rest: str, query: str = ""):
    return parse_xcap_path("/xcap-root", rest, query)


class TestDocumentSelector:
    def test_users_tree(self):
        uri = parse("/resource-lists/users/sip:alice@example.com/index")
        assert (uri.auid, uri.tree, uri.xui, uri.segments) == ("resource-lists", "users", "sip:alice@example.com", ("index",))
        assert uri.node_selector is None
        assert uri.doc_uri() == "/xcap-root/resource-lists/users/sip:alice@example.com/index"

    def test_global_tree(self):
        uri = parse("/xcap-caps/global/index")
        assert (uri.tree, uri.xui, uri.segments) == ("global", None, ("index",))

    def test_sub_folders(self):
        uri = parse("/org.openmobilealliance.pres-content/users/sip:a@b/oma_status-icon/rcs_status_icon")
        assert uri.segments == ("oma_status-icon", "rcs_status_icon")
        assert uri.document_name == "rcs_status_icon"

    def test_percent_encoded_xui_is_decoded_once(self):
        uri = parse("/pres-rules/users/sip%3Aalice%40example.com/index")
        assert uri.xui == "sip:alice@example.com"
        assert uri.doc_uri() == "/xcap-root/pres-rules/users/sip:alice@example.com/index"

    def test_encoded_slash_stays_inside_the_xui(self):
        uri = parse("/resource-lists/users/sip:jo%2Fe@example.com/index")
        assert uri.xui == "sip:jo/e@example.com"
        assert uri.segments == ("index",)

    def test_plus_stays_a_literal_plus(self):
        uri = parse("/resource-lists/users/sip:+15551234@example.com/index")
        assert uri.xui == "sip:+15551234@example.com"
        assert xui_account(uri.xui, "x") == ("+15551234", "example.com")

    def test_double_percent_encoding_is_decoded_only_once(self):
        assert parse("/resource-lists/users/sip:a%2540b@example.com/index").xui == "sip:a%40b@example.com"

    @pytest.mark.parametrize(
        "rest, status",
        [
            ("", 404),
            ("/", 404),
            ("/resource-lists", 404),
            ("/resource-lists/people/x/index", 404),
            ("/resource-lists/users/sip:a@b", 404),
            ("/resource-lists/users//index", 404),
            ("/resource-lists/users/sip:a@b/", 404),
            ("/resource-lists/users/sip:a@b/dir//index", 404),
            ("/resource-lists/global", 404),
            ("/resource-lists/users/sip:a@b/../index", 400),
            ("/resource-lists/users/sip:a@b/%2e%2e", 400),
            ("/resource-lists/users/sip:a@b/in%2Fdex", 400),
            ("/resource-lists/users/sip:a@b/%zz", 400),
            ("/resource-lists/users/sip:a@b/ind%ex", 400),
            ("/resource-lists/users/sip:a@b/%00", 400),
            ("/resource-lists/users/sip:a@b/%ff", 400),
            ("/resource-lists/users/sip:a@b/index/~~", 400),
            ("/resource-lists/users/sip:a@b/index/~~/", 400),
            ("/~~/resource-lists", 404),
            ("/%7E%7E", 400),
        ],
        ids=lambda v: repr(v) if isinstance(v, str) else str(v),
    )
    def test_malformed_uris_get_400_or_404(self, rest, status):
        with pytest.raises(URIError) as caught:
            parse(rest)
        assert caught.value.status == status
        assert str(caught.value)  # a plain explanation for the client


class TestNodeSelectorSeparator:
    def test_separator_is_its_own_segment(self):
        uri = parse("/resource-lists/users/sip:a@b/index/~~/resource-lists/list%5B@name=%22x%22%5D")
        assert uri.segments == ("index",)
        assert uri.node_selector == 'resource-lists/list[@name="x"]'

    def test_tilde_pair_inside_a_name_is_not_a_separator(self):
        uri = parse("/resource-lists/users/sip:a@b/my~~doc")
        assert uri.segments == ("my~~doc",) and uri.node_selector is None

    def test_percent_encoded_separator_is_equivalent(self):
        assert parse("/resource-lists/users/sip:a@b/index/%7E%7E/resource-lists").node_selector == "resource-lists"

    def test_slash_inside_quoted_value_is_kept(self):
        uri = parse('/resource-lists/users/sip:a@b/index/~~/resource-lists/list/external[@anchor="http://x/y"]')
        assert uri.node_selector == 'resource-lists/list/external[@anchor="http://x/y"]'

    def test_node_selector_is_decoded_exactly_once(self):
        uri = parse("/resource-lists/users/sip:a@b/index/~~/a/b%5B@c=%22%2541%22%5D")
        assert uri.node_selector == 'a/b[@c="%41"]'


class TestXmlnsQuery:
    def test_rfc4825_section_10_example(self):
        bindings = parse_xmlns_query("xmlns(df=urn:test:default-namespace)xmlns(df2=urn:test:namespace1-uri)")
        assert bindings == {"df": "urn:test:default-namespace", "df2": "urn:test:namespace1-uri"}

    def test_percent_encoded_query(self):
        assert parse_xmlns_query("xmlns(p%3Durn:a)") == {"p": "urn:a"}

    def test_xpointer_escapes_and_other_schemes(self):
        assert parse_xmlns_query("foo(bar^)baz) xmlns(p=urn:x^(1^))") == {"p": "urn:x(1)"}

    @pytest.mark.parametrize("query", ["xmlns(p)", "xmlns(=urn:a)", "xmlns(p=urn:a", "junk", "xmlns(1p=urn:a)", "xmlns(p=a^b)"])
    def test_malformed_query_is_400(self, query):
        with pytest.raises(URIError) as caught:
            parse_xmlns_query(query)
        assert caught.value.status == 400

    def test_bindings_are_kept_with_a_node_selector(self):
        uri = parse("/pres-rules/users/sip:a@b/index/~~/cr:ruleset", "xmlns(cr=urn:ietf:params:xml:ns:common-policy)")
        assert dict(uri.namespaces) == {"cr": "urn:ietf:params:xml:ns:common-policy"}

    def test_query_without_node_selector_is_400(self):
        with pytest.raises(URIError) as caught:
            parse("/pres-rules/users/sip:a@b/index", "xmlns(cr=urn:x)")
        assert caught.value.status == 400


class TestRoot:
    @pytest.mark.parametrize(
        "raw, expected",
        [
            ("/xcap-root/resource-lists/x", ("/xcap-root", "/resource-lists/x")),
            ("/xcap-root", ("/xcap-root", "")),
            ("/xcap%2Droot/a", ("/xcap-root", "/a")),
            ("/alias/a", ("/alias", "/a")),
            ("/deep/er/a", ("/deep/er", "/a")),
            ("/xcap-rootx/a", None),
            ("/other", None),
        ],
    )
    def test_match_root(self, raw, expected):
        assert match_root(raw, ("/xcap-root", "/alias", "/deep/er")) == expected


class TestXUIAccount:
    @pytest.mark.parametrize(
        "xui, account",
        [
            ("sip:alice@example.com", ("alice", "example.com")),
            ("sips:alice@Example.COM", ("alice", "example.com")),
            ("sip:alice@example.com:5061;transport=tls", ("alice", "example.com")),
            ("sip:alice:secret@example.com", ("alice", "example.com")),
            ("sip:bob@[2001:db8::1]:5060", ("bob", "[2001:db8::1]")),
            ("alice@example.com", ("alice", "example.com")),
            ("ALICE@example.com", ("ALICE", "example.com")),
            ("carol", ("carol", "default.org")),
            ("tel:+15551234", ("+15551234", "default.org")),
        ],
    )
    def test_mapping_to_kamailio_username_and_domain(self, xui, account):
        assert xui_account(xui, "default.org") == account

    def test_canonical_xui_lowercases_scheme_and_host_only(self):
        assert canonical_xui("SIP:Alice@EXAMPLE.com") == "sip:Alice@example.com"
        assert canonical_xui("tel:+1555") == "tel:+1555"
