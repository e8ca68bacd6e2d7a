"""The one reader of integers from users' and operators' text."""

import pytest

from vnmlib.model.numbers import decimal


@pytest.mark.parametrize("text, number", [("0", 0), ("42", 42), ("4294967295", 4294967295)])
def test_plain_decimal_is_a_number(text, number):
    assert decimal(text) == number


@pytest.mark.parametrize("text", ["", "-1", "+1", " 1", "1 ", "1_000", "٧", "0x10", "1.0",
                                  "True", "1" * 21])
def test_anything_else_is_not(text):
    assert decimal(text) is None


def test_signed_takes_one_leading_minus_only():
    assert decimal("-7", signed=True) == -7
    assert decimal("--7", signed=True) is None
    assert decimal("-", signed=True) is None


def test_digits_bound_the_length():
    assert decimal("12345678901", digits=10) is None
    assert decimal("1234567890", digits=10) == 1234567890
