"""Broker errors survive pickling (Celery carries them between processes)."""

from __future__ import annotations

import pickle

from brokers.exceptions import BrokerError, CodecError, InstrumentFileError


def test_broker_error_round_trips_through_pickle():
    error = BrokerError(
        "token expired", broker="dhan", permanent=True, code="DH-901", http_status=401
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.broker, copy.permanent, copy.code, copy.http_status) == (
        "token expired", "dhan", True, "DH-901", 401,
    )  # fmt: skip
    assert str(copy) == "token expired [dhan, DH-901, HTTP 401; permanent]"


def test_codec_error_names_offset_code_and_length():
    error = CodecError("truncated Full packet", offset=8, code=8, length=100)
    assert str(error) == "truncated Full packet (offset=8 code=8 length=100)"


def test_instrument_file_error_names_the_row():
    assert str(InstrumentFileError("bad date", row=12)) == "row 12: bad date"
