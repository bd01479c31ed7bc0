"""A fake SMTP server on aiosmtpd for offline development and tests."""

from fake_smtp.address_rules import AddressRule, parse_address_rule
from fake_smtp.faults import Fault, FaultPlan, parse_fault
from fake_smtp.mailbox import Mailbox, Message
from fake_smtp.server import FakeSMTP

__all__ = ["AddressRule", "FakeSMTP", "Fault", "FaultPlan", "Mailbox", "Message", "parse_address_rule", "parse_fault"]
