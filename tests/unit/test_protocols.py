"""Which uvicorn protocol class ``flux-dao serve`` runs for each FLUX_DAO_HTTP_PARSER."""

import pytest
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from flux_dao.config import HttpParser
from flux_dao.http.protocols import http_protocol


@pytest.mark.parametrize(
    ("parser", "base"),
    [(HttpParser.AUTO, HttpToolsProtocol), (HttpParser.HTTPTOOLS, HttpToolsProtocol), (HttpParser.H11, H11Protocol)],
)
def test_each_parser_gets_a_subclass_of_uvicorns_protocol(parser, base):
    chosen = http_protocol(parser)
    assert issubclass(chosen, base)
    assert chosen is not base
