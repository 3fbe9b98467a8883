"""Exchange cmdlet text → unified-audit-log ``Parameters``.

Two kinds of text carry Exchange cmdlets on premises:

* the **MSExchange Management** event log (provider ``MSExchange CmdletLogs``, event 1 = success,
  6 = failure; formats.md §4.2): ``Data[0]`` is the cmdlet, ``Data[1]`` the parameters rendered
  as ``-Name "Value" -Other "Value"``, ``Data[2]`` the caller (a canonical name such as
  ``ave.local/Users/Administrateur``). Exchange does **not** escape quotes inside values (the
  real ProxyLogon record has ``-ExternalUrl "http://ffff/#<script language="JScript" …>"``), so
  in this mode a value ends at the quote that is followed by `` -Name`` or by the end of the
  text. NXLog keeps only the rendered ``Message``: ``Cmdlet suceeded. Cmdlet Set-X, parameters
  -A "b".`` (the misspelling is Exchange's own), parsed by :func:`parse_message`.
* **PowerShell script blocks** (event 4104 ``ScriptBlockText``): real PowerShell, so the usual
  quoting rules apply (``"…"`` with `````"`` and ``""`` escapes, ``'…'`` with ``''``, here-strings,
  ``$true``/``$false``, ``-Switch``, ``-Switch:$false``, arrays ``a,b``, ``@(…)``, hashtables
  ``@{Add="a","b"}``, positional ``Identity``, splatting ``@params`` of a hashtable assigned in
  the same script, ``$var`` assigned a literal in the same script). :func:`script_commands`
  finds each command of interest, also inside loops, pipelines (``Get-Mailbox ceo |
  Add-MailboxPermission …`` takes the identity from the left side) and multi-line commands
  (backtick continuation). Obfuscated forms (string concatenation, ``Invoke-Expression``,
  encoded commands, aliases, tick-inserted names such as ``Add-Mai`lboxPermission``) are out of
  scope: what they run is only known at run time.

:func:`ual_record` turns a parsed command into the UAL ExchangeAdmin shape (formats.md §2.4) so
the Microsoft 365 rules and event mapper apply unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

#: Cmdlets whose script-block use becomes a UAL-shaped record (lower case). Permission grants,
#: their removals (so the event mapper sees revocations), and the closely related changes the
#: built-in m365 rules judge (forwarding, audit bypass, inbox rules).
SCRIPT_CMDLETS = {c.lower(): c for c in (
    "Add-MailboxPermission", "Remove-MailboxPermission", "Add-RecipientPermission", "Remove-RecipientPermission",
    "Add-ADPermission", "Remove-ADPermission", "Set-Mailbox", "Add-MailboxFolderPermission",
    "Set-MailboxFolderPermission", "Remove-MailboxFolderPermission", "New-ManagementRoleAssignment",
    "New-RoleGroup", "Add-RoleGroupMember", "Update-RoleGroupMember", "Set-MailboxAuditBypassAssociation",
    "New-InboxRule", "Set-InboxRule",
)}

#: The parameter a cmdlet's first positional argument binds to.
POSITIONAL = {"new-rolegroup": "Name", "new-managementroleassignment": "Name", "new-inboxrule": "Name"}

_PARAM = re.compile(r"-([A-Za-z_][A-Za-z0-9_]*)(:?)")
_LOG_VALUE_END = re.compile(r'"(?=\s+-[A-Za-z_][A-Za-z0-9_]*(?::|\s|$)|\s*\.?\s*$)')
_MESSAGE = re.compile(r"^\s*Cmdlet\s+(?P<status>\w+)\.\s+Cmdlet\s+(?P<cmdlet>[A-Za-z]+-[A-Za-z0-9]+)\s*,\s*"
                      r"parameters\s?(?P<params>.*?)\s*$", re.DOTALL)


@dataclass
class Command:
    """One cmdlet invocation: its name, parameters in order (``Name``/``Value`` text), and where
    it starts (0-based line within the text)."""

    cmdlet: str
    parameters: list[dict[str, str]] = field(default_factory=list)
    line: int = 0
    text: str = ""

    def get(self, name: str) -> str | None:
        low = name.lower()
        for p in self.parameters:
            if p["Name"].lower() == low:
                return p["Value"]
        return None


# -- the MSExchange Management rendering ------------------------------------------------------
def parse_log_parameters(text: str | None) -> list[dict[str, str]]:
    """``-Identity "x" -User "y" -Force "True"`` (Exchange's cmdlet-log rendering) → Name/Value
    pairs. Values keep inner quotes as they are; an unquoted value runs to the next `` -Name``."""
    out: list[dict[str, str]] = []
    if not text:
        return out
    s = text.strip()
    i, n = 0, len(s)
    while i < n:
        while i < n and s[i].isspace():
            i += 1
        m = _PARAM.match(s, i)
        if not m:
            # stray text (should not happen): skip to the next " -Name"
            nxt = re.search(r"\s-[A-Za-z_]", s[i:])
            if not nxt:
                break
            i += nxt.start() + 1
            continue
        name = m.group(1)
        i = m.end()
        while i < n and s[i] in " \t":
            i += 1
        if i >= n or (s[i] == "-" and _PARAM.match(s, i)):
            out.append({"Name": name, "Value": "True"})  # a switch rendered without a value
            continue
        if s[i] == '"':
            end = _LOG_VALUE_END.search(s, i + 1)
            if end is None:
                value, i = s[i + 1:].rstrip(". "), n
            else:
                value, i = s[i + 1:end.start()], end.end()
        else:
            nxt = re.search(r"\s+-[A-Za-z_][A-Za-z0-9_]*(?::|\s|$)", s[i:])
            j = n if nxt is None else i + nxt.start()
            value, i = s[i:j].strip(), j
            if i >= n:
                value = value.rstrip(".")
        out.append({"Name": name, "Value": _log_literal(value)})
    return out


def _log_literal(value: str) -> str:
    low = value.lower()
    if low == "$true":
        return "True"
    if low == "$false":
        return "False"
    return value


def parse_message(message: str | None) -> tuple[str, list[dict[str, str]], bool] | None:
    """The rendered MSExchange Management message → (cmdlet, parameters, succeeded), or None
    when it is not in the documented English form."""
    if not message:
        return None
    m = _MESSAGE.match(message)
    if not m:
        return None
    params = m.group("params")
    if params.endswith("."):
        params = params[:-1]
    status = m.group("status").lower()
    return m.group("cmdlet"), parse_log_parameters(params), not status.startswith("fail")


# -- PowerShell ------------------------------------------------------------------------------
class _Scanner:
    """A small PowerShell lexer: enough to find command boundaries and argument tokens."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.n = len(text)

    def skip_string(self, i: int) -> int:
        """Index just past the string literal starting at ``i`` (``"``, ``'``, here-strings)."""
        s, n = self.s, self.n
        if s.startswith(('@"', "@'"), i) and s[i + 2:i + 3] in ("\n", "\r") or s.startswith(('@"\r', "@'\r"), i):
            q = s[i + 1]
            end = re.compile(r"[\r\n]" + re.escape(q) + "@").search(s, i + 2)
            return n if end is None else end.end()
        q = s[i]
        j = i + 1
        while j < n:
            c = s[j]
            if q == '"' and c == "`":
                j += 2
                continue
            if c == q or (q == '"' and c in "\u201c\u201d") or (q == "'" and c in "\u2018\u2019"):
                if j + 1 < n and s[j + 1] == c:
                    j += 2  # doubled quote
                    continue
                return j + 1
            j += 1
        return n

    def skip_comment(self, i: int) -> int:
        s = self.s
        if s.startswith("<#", i):
            end = s.find("#>", i + 2)
            return self.n if end < 0 else end + 2
        end = s.find("\n", i)
        return self.n if end < 0 else end

    def segments(self) -> Iterator[tuple[int, int, str]]:
        """(start, end, separator-before) of each simple statement or pipeline element."""
        s, n = self.s, self.n
        depth = 0  # inside ( ), @( ), $( ), @{ } (a hashtable literal)
        stack: list[str] = []
        start, sep = 0, ""
        i = 0
        while i < n:
            c = s[i]
            if c in "\"'" or c in "\u201c\u201d\u2018\u2019" or (c == "@" and s[i + 1:i + 2] in ("\"", "'")):
                i = self.skip_string(i) if c != "@" or s[i + 2:i + 3] in ("\r", "\n") else self.skip_string(i + 1)
                continue
            if c == "#" and (i == 0 or s[i - 1].isspace() or s[i - 1] in ";{}()|"):
                i = self.skip_comment(i)
                continue
            if c == "<" and s.startswith("<#", i):
                i = self.skip_comment(i)
                continue
            if c == "`":
                i += 2  # escaped character, including a line continuation
                continue
            if c in "(" or (c == "{" and i > 0 and s[i - 1] in "@$") or (c == "(" and i > 0 and s[i - 1] in "@$"):
                stack.append(")" if c == "(" else "}")
                depth += 1
                i += 1
                continue
            if depth and c == stack[-1]:
                stack.pop()
                depth -= 1
                i += 1
                continue
            if depth == 0 and c in "\n;|{}":
                if c == "|" and s.startswith("||", i):
                    yield start, i, sep
                    start, sep, i = i + 2, ";", i + 2
                    continue
                yield start, i, sep
                sep = "|" if c == "|" else ";"
                start = i + 1
            elif depth == 0 and c == "&" and s.startswith("&&", i):
                yield start, i, sep
                start, sep, i = i + 2, ";", i + 2
                continue
            i += 1
        yield start, n, sep

    # -- tokens of one command's arguments ----------------------------------------------------
    def tokens(self, start: int, end: int) -> list[tuple[str, str]]:
        """(kind, text): ``param`` (``-Name`` or ``-Name:``), ``value``, ``comma``."""
        s = self.s
        out: list[tuple[str, str]] = []
        i = start
        while i < end:
            c = s[i]
            if c.isspace() or (c == "`" and i + 1 < end and s[i + 1] in "\r\n"):
                i += 1 if c != "`" else 2
                continue
            if c == "#" and (i == start or s[i - 1].isspace()):
                i = min(self.skip_comment(i), end)
                continue
            if c == "-" and i + 1 < end and (s[i + 1].isalpha() or s[i + 1] == "_") and (i == start or s[i - 1].isspace()):
                m = _PARAM.match(s, i)
                if m:
                    out.append(("param", m.group(1) + m.group(2)))
                    i = m.end()
                    continue
            if c == ",":
                out.append(("comma", ","))
                i += 1
                continue
            j = self._value_end(i, end)
            out.append(("value", s[i:j]))
            i = j
        return out

    def _value_end(self, i: int, end: int) -> int:
        s = self.s
        j = i
        depth = 0
        while j < end:
            c = s[j]
            if c in "\"'\u201c\u201d\u2018\u2019":
                j = self.skip_string(j)
                continue
            if c == "@" and j + 1 < end and s[j + 1] in "\"'":
                j = self.skip_string(j) if s[j + 2:j + 3] in ("\r", "\n") else self.skip_string(j + 1)
                continue
            if c in "({[":
                depth += 1
            elif c in ")}]":
                depth -= 1
            elif c == "`":
                j += 2
                continue
            elif depth <= 0 and (c.isspace() or c == ","):
                break
            j += 1
        return min(j, end)


def _unquote(token: str, variables: dict[str, Any]) -> str:
    t = token.strip()
    if len(t) >= 2 and t[0] in "\"\u201c\u201d" and t[-1] in "\"\u201c\u201d":
        body = t[1:-1]
        body = body.replace('""', '"')
        return re.sub(r"`(.)", lambda m: {"n": "\n", "t": "\t", "0": "", "r": "\r"}.get(m.group(1), m.group(1)), body)
    if len(t) >= 2 and t[0] in "'\u2018\u2019" and t[-1] in "'\u2018\u2019":
        return t[1:-1].replace("''", "'")
    if t.startswith(("@\"", "@'")):
        body = t[2:-2]
        return body.strip("\r\n")
    low = t.lower()
    if low == "$true":
        return "True"
    if low == "$false":
        return "False"
    if low == "$null":
        return "$null"
    if t.startswith("$") and re.fullmatch(r"\$[A-Za-z_][\w]*", t):
        value = variables.get(t[1:].lower())
        if isinstance(value, str):
            return value
    if t.startswith("@(") and t.endswith(")"):
        inner = t[2:-1]
        sc = _Scanner(inner)
        parts = [_unquote(v, variables) for k, v in sc.tokens(0, len(inner)) if k == "value"]
        return ",".join(parts)
    return t


def _hashtable(text: str, variables: dict[str, Any]) -> dict[str, str] | None:
    """``@{Identity="ceo"; User='eve'}`` → {"Identity": "ceo", "User": "eve"} (for splatting)."""
    t = text.strip()
    if not (t.startswith("@{") and t.endswith("}")):
        return None
    body = t[2:-1]
    out: dict[str, str] = {}
    sc = _Scanner(body)
    # split on ; and newlines outside strings/brackets
    for a, b, _ in sc.segments():
        part = body[a:b].strip()
        if not part or "=" not in part:
            continue
        key, _, val = part.partition("=")
        key = key.strip().strip("\"'")
        vs = _Scanner(val)
        toks = vs.tokens(0, len(val))
        values = [_unquote(v, variables) for k, v in toks if k == "value"]
        if key:
            out[key] = ",".join(values)
    return out


def _bind(cmdlet: str, tokens: list[tuple[str, str]], variables: dict[str, Any]) -> list[dict[str, str]]:
    params: list[dict[str, str]] = []
    positional: list[str] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "param":
            name = text.rstrip(":")
            colon = text.endswith(":")
            values: list[str] = []
            j = i + 1
            if colon or (j < len(tokens) and tokens[j][0] == "value"):
                # a value, possibly an array a,b,c
                while j < len(tokens) and tokens[j][0] == "value":
                    values.append(tokens[j][1])
                    j += 1
                    if j < len(tokens) and tokens[j][0] == "comma":
                        j += 1
                        continue
                    break
            if values:
                if len(values) == 1 and values[0].startswith("@{"):
                    value = values[0]  # keep @{Add=…; Remove=…} as written (split_identities reads it)
                else:
                    value = ",".join(_unquote(v, variables) for v in values)
            else:
                value = "True"  # a switch
            params.append({"Name": name, "Value": value})
            i = j
            continue
        if kind == "value":
            if text.startswith("@") and re.fullmatch(r"@[A-Za-z_]\w*", text):
                splat = variables.get(text[1:].lower())
                if isinstance(splat, dict):
                    params.extend({"Name": k, "Value": v} for k, v in splat.items())
                    i += 1
                    continue
            values = [text]
            j = i + 1
            while j + 1 < len(tokens) and tokens[j][0] == "comma" and tokens[j + 1][0] == "value":
                values.append(tokens[j + 1][1])
                j += 2
            positional.append(",".join(_unquote(v, variables) for v in values))
            i = j
            continue
        i += 1
    if positional and not any(p["Name"].lower() == POSITIONAL.get(cmdlet.lower(), "Identity").lower() for p in params):
        params.insert(0, {"Name": POSITIONAL.get(cmdlet.lower(), "Identity"), "Value": positional[0]})
    return params


_ASSIGN = re.compile(r"^\s*\$([A-Za-z_]\w*)\s*=\s*(.+?)\s*$", re.DOTALL)
_WORD = re.compile(r"[&.]?\s*([A-Za-z][A-Za-z0-9]*-[A-Za-z][A-Za-z0-9]*)(?=\s|$|\(|;)")


def parse_command_text(text: str) -> Command | None:
    """One command line of PowerShell (``Add-MailboxPermission -Identity ceo -User eve …``)."""
    found = list(script_commands(text, cmdlets=None))
    return found[0] if found else None


def script_commands(script: str, cmdlets: dict[str, str] | None = SCRIPT_CMDLETS) -> Iterator[Command]:
    """Every invocation of ``cmdlets`` (lower-case name → canonical name; None = any ``Verb-Noun``)
    in a PowerShell script, in order."""
    if not script:
        return
    sc = _Scanner(script)
    variables: dict[str, Any] = {}
    previous: tuple[str, list[tuple[str, str]]] | None = None
    for a, b, sep in sc.segments():
        seg = script[a:b]
        stripped = seg.strip()
        if not stripped:
            continue
        m_assign = _ASSIGN.match(seg)
        if m_assign and sep != "|":
            name, rhs = m_assign.group(1).lower(), m_assign.group(2)
            table = _hashtable(rhs, variables)
            if table is not None:
                variables[name] = table
            elif re.fullmatch(r"\"[^\"`$]*\"|'[^']*'", rhs.strip()):
                variables[name] = _unquote(rhs, variables)
            else:
                variables.pop(name, None)
            previous = None
            continue
        lead = len(seg) - len(seg.lstrip())
        m = _WORD.match(seg, lead)
        if not m:
            previous = None
            continue
        name = m.group(1)
        low = name.lower()
        toks = sc.tokens(a + m.end(), b)
        if cmdlets is None or low in cmdlets:
            canonical = cmdlets[low] if cmdlets else name
            params = _bind(canonical, toks, variables)
            if sep == "|" and previous is not None and not any(p["Name"].lower() == "identity" for p in params):
                prev_name, prev_toks = previous
                prev_params = _bind(prev_name, prev_toks, variables)
                ident = next((p["Value"] for p in prev_params if p["Name"].lower() == "identity"), None)
                if ident and POSITIONAL.get(low) is None:
                    params.insert(0, {"Name": "Identity", "Value": ident})
            yield Command(canonical, params, script.count("\n", 0, a + lead), seg.strip())
        previous = (name, toks)


# -- UAL shape --------------------------------------------------------------------------------
def ual_record(cmdlet: str, parameters: list[dict[str, str]], *, caller: str | None, time: str | None,
               succeeded: bool | None, record_id: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """An ExchangeAdmin-shaped record (RecordType 1, Workload Exchange) for an on-premises cmdlet."""
    identity = next((p["Value"] for p in parameters if p["Name"].lower() == "identity"), None)
    rec: dict[str, Any] = {
        "CreationTime": time or "",
        "Id": record_id,
        "Operation": cmdlet,
        "RecordType": 1,
        "Workload": "Exchange",
        "UserId": caller or "",
        "ObjectId": identity or "",
        "Parameters": parameters,
    }
    if succeeded is not None:
        rec["ResultStatus"] = "True" if succeeded else "False"
    if extra:
        rec.update(extra)
    return rec
