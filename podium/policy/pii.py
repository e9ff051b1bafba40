"""Structured identifiers: fast regular expressions confirmed by checksums and context.

Credit cards pass Luhn; IBANs pass ISO 13616 mod-97; IP addresses parse; US SSNs respect the
SSA's never-issued ranges. Phone numbers are the loosest: international formats vary too much
for one pattern, so a digit run with phone-like grouping counts when it is not a card, SSN,
date, time or postal code, and short runs need a context word (phone, call, mobile, ...).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from podium.policy.findings import Finding
from podium.policy.needles import Needles

EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b"
)
DIGIT_RUN = re.compile(
    r"(?<![\w+])(?:\+ ?\d|\(\d|\d)[\d \t().\-/]*\d(?: ?(?:x|ext\.?|#) ?\d{1,6})?(?![\w])"
)
CARD_GROUPS = re.compile(r"\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -])\d{6}\2\d{4,5}|\d{12,19}")
SSN = re.compile(r"\d{3}([- ])\d{2}\1\d{4}")
DATE_LIKE = re.compile(
    r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})(?!\d)|(\d{1,2})([-/.])(\d{1,2})\6(\d{4}|\d{2})(?!\d)"
)
POSTAL = re.compile(r"\d{5}-\d{3,4}|\d{2}-\d{3}")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.]\d)"
)
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?(?![\w:])")
PHONE_CONTEXT = re.compile(
    r"(phone|call|mobile|cell|tel\b|telephone|fax|desk|office|whatsapp|sms|text me|ring|"
    r"number|contact|reach|registered|answering|dial|fax)",
    re.IGNORECASE,
)
DOB = re.compile(
    r"(?i)\b(?:born(?: on| in)?|birth ?day(?: is)?(?: on)?|date of birth|d\.?o\.?b\.?)\b"
    r"[^\d\n]{0,20}"
    r"(\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}|\d{4}-\d{2}-\d{2}|"
    r"(?:\d{1,2}\s+)?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4}|"
    r"\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*,?\s+\d{4})"
)
LABELLED_ID = re.compile(
    r"(?i)\b(passport|driver'?s?'? ?licen[cs]e|driving licen[cs]e|licen[cs]e|national id|"
    r"id card|tax id|medical record|account)(?: (?:number|no\.?|num|#))?\s*(?:is|:|#|=)?\s*"
    r"([A-Z0-9][A-Z0-9\-]{4,19})\b"
)
ID_CONTEXT = re.compile(
    r"(?i)(passport|licen[cs]e|national id|tax id)\W{0,3}(number|no\.?|#)?\W{0,3}(is)?\W{0,3}$"
)
STREET_AFTER = re.compile(r" ?[A-Z][a-z]")
ID_KIND = {"passport": "PASSPORT", "account": "ACCOUNT_NUMBER"}


def luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


def looks_like_date(raw: str) -> bool:
    """A run that starts with a plausible calendar date (year-month-day or day-month-year in
    either order), so ``2000-04-16 11`` is a timestamp, while ``71-33-52-22`` is not."""
    match = DATE_LIKE.match(raw)
    if match is None:
        return False
    if match.group(1):
        first, second = int(match.group(3)), int(match.group(4))
    else:
        first, second = int(match.group(5)), int(match.group(7))
    return 1 <= min(first, second) <= 12 and 1 <= max(first, second) <= 31


def ssn_valid(digits: str) -> bool:
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


_IPV4_HINT = re.compile(r"\d\.\d")  # in every IPv4 match
# An ASCII text's shape: capitals become "A", digits "0", small letters "a", the rest stays.
# Every IBAN has two capitals and two digits in a row (b"AA00"), every IPv4 address
# digit-dot-digit (b"0.0"): plain substrings of the shape, which bytes.find scans several
# times faster than a regular expression, and the digits are counted in one call.
ASCII_SHAPE = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    b"A" * 26 + b"a" * 26 + b"0" * 10,
)
_DOB_WORDS = ("born", "birth", "dob", "d.o", "do.b")
_ID_WORDS = ("passport", "licen", "national id", "id card", "tax id", "medical record", "account")
_LABEL_WORDS = Needles(_DOB_WORDS + _ID_WORDS)
_DOB_BITS = _LABEL_WORDS.bits(_DOB_WORDS)
_ID_BITS = _LABEL_WORDS.bits(_ID_WORDS)


def _may_hold_ipv6(text: str) -> bool:
    """Whether the IPv6 pattern is worth running: a ``::`` or five colons."""
    return "::" in text or text.count(":") >= 5


class PatternDetector:
    """Every structured identifier in one pass per pattern. Cheap tests first: a text without
    ``@`` is never searched for e-mail addresses, one without digits for numbers, and an
    ASCII text only for the identifiers whose hints it has (seven digits for a card, SSN or
    phone number; two capitals and two digits for an IBAN; a label word for a birth date or
    an ID). The regular expressions start with look-behinds or word boundaries, which the
    engine cannot skip ahead for, so each costs tens of microseconds per KB when it runs."""

    def inspect(self, text: str) -> list[Finding]:
        findings: list[Finding] = []
        if "@" in text:
            findings.extend(
                Finding(m.start(), m.end(), "EMAIL", 1.0, "regex") for m in EMAIL.finditer(text)
            )
        if not text.isascii():
            if any(char.isdigit() for char in text):
                findings.extend(self._numbers(text))
                findings.extend(self._ibans(text))
                findings.extend(self._ips(text, ipv4=_IPV4_HINT.search(text) is not None))
                findings.extend(self._labelled(text))
            return findings
        shape = text.encode("ascii").translate(ASCII_SHAPE)
        digits = shape.count(b"0")
        if not digits:
            return findings
        if digits >= 7:  # fewer cannot make a card, SSN or phone number
            findings.extend(self._numbers(text))
        if b"AA00" in shape:
            findings.extend(self._ibans(text))
        ipv4 = b"0.0" in shape
        if ipv4 or _may_hold_ipv6(text):  # no generator for a text with neither
            findings.extend(self._ips(text, ipv4=ipv4))
        labels = _LABEL_WORDS.found(text.lower())
        if labels & _DOB_BITS:
            findings.extend(self._dates_of_birth(text))
        if labels & _ID_BITS:
            findings.extend(self._ids(text))
        return findings

    def _numbers(self, text: str) -> Iterator[Finding]:
        for match in DIGIT_RUN.finditer(text):
            raw = match.group(0).rstrip(" .-/(")
            start = match.start()
            # Runs cross line breaks only inside one identifier: cut at the first one.
            if "\n" in raw:
                raw = raw.split("\n", 1)[0].rstrip(" .-/(")
            digits = "".join(char for char in raw if char.isdigit())
            if len(digits) < 7:
                continue
            end = start + len(raw)
            kind = self._classify(text, start, raw, digits)
            if kind is not None:
                yield Finding(start, end, kind, 1.0, "regex")

    def _classify(self, text: str, start: int, raw: str, digits: str) -> str | None:
        if SSN.fullmatch(raw):
            # SSN-shaped but never issued (9xx, 000, 666): not a phone number either.
            return "US_SSN" if ssn_valid(digits) else None
        if 12 <= len(digits) <= 19 and CARD_GROUPS.fullmatch(raw) and luhn(digits):
            return "CREDIT_CARD" if len(set(digits)) > 1 else None
        if "/" in raw or looks_like_date(raw) or POSTAL.fullmatch(raw):
            return None
        if len(digits) > 15 or (raw.count(".") >= 3 and IPV4.fullmatch(raw)):
            return None
        before = text[max(0, start - 40) : start]
        after = text[start + len(raw) : start + len(raw) + 12]
        if ID_CONTEXT.search(before):
            return None  # a licence or passport number: the labelled-ID pattern has it
        grouped = raw[0] in "+(" or any(sep in raw for sep in " -.")
        context = PHONE_CONTEXT.search(before + " " + after) is not None
        if raw[0] == "+" or "(" in raw:
            return "PHONE"
        if len(digits) <= 9 and STREET_AFTER.match(after):
            return None  # "17151 2450 Crown St": house numbers before a street name
        if grouped and (len(digits) >= 9 or context):
            return "PHONE"
        if not grouped and context and 9 <= len(digits) <= 13:
            return "PHONE"
        return None

    def _ibans(self, text: str) -> Iterator[Finding]:
        for match in IBAN.finditer(text):
            if iban_valid(match.group(0)):
                yield Finding(match.start(), match.end(), "IBAN", 1.0, "regex")

    def _ips(self, text: str, *, ipv4: bool) -> Iterator[Finding]:
        """``ipv4``: whether the text has digit-dot-digit, as every IPv4 address does."""
        if ipv4:
            for match in IPV4.finditer(text):
                yield Finding(match.start(), match.end(), "IP_ADDRESS", 1.0, "regex")
        if _may_hold_ipv6(text):
            for match in IPV6.finditer(text):
                candidate = match.group(0)
                if candidate.count(":") < 2 or len(candidate) < 3:
                    continue
                try:
                    ipaddress.IPv6Address(candidate.split("%", 1)[0])
                except ValueError:
                    continue
                yield Finding(match.start(), match.end(), "IP_ADDRESS", 1.0, "regex")

    def _labelled(self, text: str) -> Iterator[Finding]:
        yield from self._dates_of_birth(text)
        yield from self._ids(text)

    def _dates_of_birth(self, text: str) -> Iterator[Finding]:
        for match in DOB.finditer(text):
            yield Finding(match.start(1), match.end(1), "DATE_OF_BIRTH", 0.9, "regex")

    def _ids(self, text: str) -> Iterator[Finding]:
        for match in LABELLED_ID.finditer(text):
            value = match.group(2)
            if not any(char.isdigit() for char in value):
                continue
            label = match.group(1).lower()
            kind = ID_KIND.get(
                label.split()[0], "DRIVER_LICENSE" if "lic" in label else "ID_NUMBER"
            )
            yield Finding(match.start(2), match.end(2), kind, 0.9, "regex")
