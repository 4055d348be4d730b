"""A command's callback note and a result's ``audited`` flag: content, wire, records."""

from __future__ import annotations

import hashlib

import msgpack
import pytest

from core.errors import ProtocolError
from core.wallet import CallbackNote, Command, CommandKind, Result, ResultCode

OP = "op-1"
NOTE = CallbackNote("hub88", "/transaction/bet", "rq-1", hashlib.sha256(b"{}").digest())


def test_a_note_is_not_part_of_the_commands_content() -> None:
    """A provider's retry carries a new request id and maybe another body: it is still the
    same command, answered from the stored record rather than refused as a reuse."""
    plain = Command(CommandKind.BET, OP, "alice", "EUR", "hub88:t1", 150)
    noted = Command(CommandKind.BET, OP, "alice", "EUR", "hub88:t1", 150, callback=NOTE)
    retried = Command(
        CommandKind.BET, OP, "alice", "EUR", "hub88:t1", 150,
        callback=CallbackNote("hub88", "/transaction/bet", "rq-2", hashlib.sha256(b"{ }").digest()),
    )
    assert noted.request_hash() == plain.request_hash() == retried.request_hash()
    assert noted == plain


def test_a_note_travels_the_shard_wire_through_msgpack() -> None:
    command = Command(CommandKind.WIN, OP, "alice", "EUR", "hub88:w1", 500, reference="hub88:t1", callback=NOTE)
    wire = msgpack.unpackb(msgpack.packb(command.to_wire()), use_list=True)
    again = Command.from_wire(wire)
    assert again == command and again.callback == NOTE
    assert len(wire) == 12 and wire[10] == []  # no payouts, then the note
    assert Command.from_wire(Command(CommandKind.BET, OP, "alice", "EUR", "k", 5).to_wire()).callback is None


def test_a_settle_keeps_its_payouts_beside_a_note() -> None:
    command = Command(
        CommandKind.SETTLE, OP, "alice", "EUR", "s1", 7, round_ref="r1", payouts=(("k1", 7),), callback=NOTE
    )
    again = Command.from_wire(command.to_wire())
    assert again.payouts == (("k1", 7),) and again.callback == NOTE


@pytest.mark.parametrize(
    "wire",
    [["hub88", "/x", None, "not bytes"], [1, "/x", None, b"d"], ["hub88", None, None, b"d"], ["hub88", "/x", 5, b"d"]],
)
def test_a_malformed_note_is_a_protocol_error(wire: list[object]) -> None:
    base = Command(CommandKind.BET, OP, "alice", "EUR", "k", 5).to_wire()
    with pytest.raises(ProtocolError):
        Command.from_wire([*base, [], wire])


def test_audited_travels_the_wire_and_plain_results_keep_six_items() -> None:
    audited = Result(ResultCode.OK, 850, "EUR", 12, audited=True)
    assert Result.from_wire(msgpack.unpackb(msgpack.packb(audited.to_wire()), use_list=True)) == audited
    plain = Result(ResultCode.OK, 850, "EUR", 12)
    assert len(plain.to_wire()) == 6 and not Result.from_wire(plain.to_wire()).audited
    record = audited.to_record()
    assert "audited" not in record  # a stored record says what happened, not who wrote the audit row
    assert Result.from_record(record).audited is False
    assert Result.from_record(record, audited=True).audited is True
