"""A rules file: read, checked, compiled into a :class:`RuleSet`, evaluated per transaction.

::

    lists:                          # optional: the lists the rules may name
      blocked_cards: card_id        # a list's name, and the field whose values it holds
    rules:
      - id: big-amount              # letters, digits, - _ . : (at most 64): in metrics
        when: amount > 5000         # a CEL expression that is true or false
        action: decline             # allow, approve, review or decline
        description: optional text
      - id: blocked-card
        when: card_id in blocked_cards
        action: decline

A list holds values of one field: a text field of the table (``card_id``, ``terminal_id``)
or a key of ``extra`` (``extra.country``). A rule names it only as ``<its field> in
<list>``: per transaction the list's variable is ``[the field's value]`` when that value is
listed, else ``[]`` (the contents, kept by the service, are never handed to CEL), so
membership is always of the declared field's value, and another form is refused. A
value is matched by its text (an ``extra`` number by its decimal digits); other kinds of
value are never listed.

A file is refused whole (:class:`RulesError`, naming the rule and the file position) when
it is not YAML, has another shape, an unknown key, a missing or duplicate id, an unknown
action, an expression that does not parse, names a field that does not exist
(:data:`fraudrules.fields.FIELDS`), or fails with a type error or gives something other
than true or false on two test transactions of extreme values.

At run time a rule whose expression fails on a transaction (a missing ``extra`` key, a
division by zero) does not fire; :meth:`RuleSet.evaluate` says which failed and why.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import cel
import yaml

from fraudcore import Transaction
from fraudrules.errors import RulesError
from fraudrules.fields import FIELDS, Field, Getter
from fraudrules.precedence import ACTIONS, RuleAction

__all__ = [
    "MAX_FILE_BYTES",
    "list_text",
    "MAX_RULES",
    "MAX_LISTS",
    "Evaluation",
    "ListUse",
    "Lists",
    "Rule",
    "RuleSet",
    "load_rules",
    "parse_rules",
    "version_of",
]

MAX_FILE_BYTES = 1024 * 1024
MAX_RULES = 1000
MAX_EXPRESSION = 4000  # characters of one `when`
MAX_LISTS = 100
_LIST_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_EXTRA_KEY = re.compile(r"extra\.([A-Za-z_][A-Za-z0-9_]{0,63})")
_CEL_WORDS = frozenset({
    "in", "as", "break", "const", "continue", "else", "for", "function", "if", "import", "let",
    "loop", "package", "namespace", "return", "var", "void", "while", "true", "false", "null",
    "has", "all", "exists", "exists_one", "map", "filter", "size", "int", "uint", "double",
    "string", "bool", "bytes", "list", "type", "timestamp", "duration", "dyn",
})
#: A list's contents, by name, for one batch: ``value in lists[name]``.
Lists = Mapping[str, Container[str]]
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_KEYS = ("id", "when", "action", "description")
_CEL_ERROR = re.compile(r"<input>:(\d+):(\d+): (.*?)(?:\n|$)")
_STRING_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_MACROS = ("all", "exists", "exists_one", "map", "filter")


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    when: str
    action: RuleAction
    line: int  # where the rule starts in its file (1-based)
    description: str = ""
    program: cel.Program | None = field(default=None, repr=False, compare=False)
    reads: frozenset[str] = field(default=frozenset(), compare=False)  # the names it uses


@dataclass(frozen=True, slots=True)
class ListUse:
    """A list the rules name: the field whose values it holds (``card_id``,
    ``extra.country``) and the getter of that field's raw value in a transaction."""

    name: str
    path: str
    get: Getter = field(repr=False, compare=False)


def list_text(value: Any) -> str | None:
    """The text a list holds for a field's value: a text as it is, a whole number (not a
    boolean) in decimal digits; ``None`` (never listed) for anything else or ``''``."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What the rules said about one transaction: those that fired, in file order, those
    that failed with the reason (they did not fire), and the lists the rules name that hold
    the transaction's value (in the file's order)."""

    fired: tuple[Rule, ...] = ()
    failed: tuple[tuple[Rule, str], ...] = ()
    listed: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuleSet:
    """Compiled rules, the hash of the file they came from, the fields they read, the lists
    the file declares (name -> field) and those the rules name."""

    version: str
    rules: tuple[Rule, ...]
    source: str = "<rules>"
    fields: tuple[Field, ...] = ()  # those the rules name, built for each transaction
    lists: Mapping[str, str] = field(default_factory=dict)
    uses: tuple[ListUse, ...] = ()

    def variables(
        self, tx: Transaction, features: Sequence[float], score: float, lists: Lists | None = None
    ) -> dict[str, Any]:
        found = {f.name: f.get(tx, features, score) for f in self.fields}
        if not self.uses:
            return found
        if lists is None:
            raise ValueError(f"the rules read lists ({', '.join(u.name for u in self.uses)}): "
                             "pass their contents (lists=)")
        for use in self.uses:
            raw = use.get(tx, features, score)
            text = list_text(raw)
            found[use.name] = [raw] if text is not None and text in lists[use.name] else []
        return found

    def reading(self, name: str) -> RuleSet:
        """The rules of this set that read ``name`` (``"score"``: those a challenger's
        score can change), with the fields and lists they need; the same version."""
        rules = tuple(rule for rule in self.rules if name in rule.reads)
        used = {read for rule in rules for read in rule.reads}
        return replace(
            self,
            rules=rules,
            fields=tuple(f for f in self.fields if f.name in used),
            uses=tuple(use for use in self.uses if use.name in used),
        )

    def evaluate(
        self, tx: Transaction, features: Sequence[float], score: float, lists: Lists | None = None
    ) -> Evaluation:
        """Every rule on one transaction (its features in ``FEATURE_NAMES`` order, its
        score; ``lists``: the contents of the lists the rules name, by name)."""
        if not self.rules:
            return Evaluation()
        variables = self.variables(tx, features, score, lists)
        listed = tuple(use.name for use in self.uses if variables[use.name])
        try:
            context = cel.Context(variables=variables)
        except Exception as exc:  # noqa: BLE001 - the library's conversion errors are not one type
            reason = f"the transaction's fields cannot be given to the rules: {_reason(exc)}"
            return Evaluation((), tuple((rule, reason) for rule in self.rules), listed)
        fired: list[Rule] = []
        failed: list[tuple[Rule, str]] = []
        for rule in self.rules:
            try:
                result = cast("cel.Program", rule.program).execute(context)
            except Exception as exc:  # noqa: BLE001 - CEL errors come as several types
                # A message may quote a value (an overflow prints its operands): never the card.
                failed.append((rule, _reason(exc).replace(tx.card_id, "<card_id>")))
                continue
            if result is True:
                fired.append(rule)
            elif result is not False:
                failed.append((rule, f"gave a {type(result).__name__}, not true or false"))
        return Evaluation(tuple(fired), tuple(failed), listed)


def _reason(exc: BaseException) -> str:
    text = str(exc).split(". Check that", 1)[0]  # the library's generic advice
    return f"{type(exc).__name__}: {text}"[:300]


def version_of(content: bytes) -> str:
    """A rules file's version: the start of the SHA-256 of its bytes."""
    return hashlib.sha256(content).hexdigest()[:16]


def load_rules(path: Path, *, fields: Mapping[str, Field] = FIELDS) -> RuleSet:
    """Read and compile the rules file at ``path``; :class:`RulesError` if it is not usable."""
    try:
        with path.open("rb") as file:
            content = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise RulesError(f"cannot read the rules file {path}: {exc.strerror or exc}") from exc
    return parse_rules(content, source=str(path), fields=fields)


def parse_rules(
    content: bytes, *, source: str = "<rules>", fields: Mapping[str, Field] = FIELDS
) -> RuleSet:
    """Compile the rules in ``content`` (a rules file's bytes)."""
    if len(content) > MAX_FILE_BYTES:
        raise RulesError(f"{source}: larger than {MAX_FILE_BYTES} bytes")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RulesError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        document = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise RulesError(f"{where}: not valid YAML: {exc.problem or exc}",
                         line=mark.line + 1 if mark else None,
                         column=mark.column + 1 if mark else None) from exc
    except yaml.YAMLError as exc:
        raise RulesError(f"{source}: not valid YAML: {exc}") from exc
    reader = _Reader(source, text.splitlines(), fields)
    rules = reader.rules(document)
    used = {name for rule in rules for name in reader.names[rule.id]}
    return RuleSet(
        version=version_of(content),
        rules=rules,
        source=source,
        fields=tuple(f for name, f in fields.items() if name in used),
        lists=dict(reader.lists),
        uses=tuple(reader.use(name) for name in reader.lists if name in used),
    )


class _Reader:
    """Walks the YAML nodes (which keep their positions) and compiles each rule."""

    def __init__(self, source: str, lines: list[str], fields: Mapping[str, Field]) -> None:
        self.source = source
        self.lines = lines
        self.fields = fields
        self.names: dict[str, tuple[str, ...]] = {}
        self.lists: dict[str, str] = {}  # declared: name -> field

    def fail(self, node: Any, message: str, *, rule: str | None = None,
             line: int | None = None, column: int | None = None) -> RulesError:
        if line is None and node is not None:
            line, column = node.start_mark.line + 1, node.start_mark.column + 1
        where = self.source + (f":{line}" if line else "") + (f":{column}" if column else "")
        who = f" rule {rule!r}:" if rule else ""
        return RulesError(f"{where}:{who} {message}", rule_id=rule, line=line, column=column)

    def rules(self, document: Any) -> tuple[Rule, ...]:
        if document is None:
            return ()  # an empty file: no rules
        top = self._mapping(document, "the file must be a mapping with a `rules` list")
        for key in top:
            if key not in ("lists", "rules"):
                raise self.fail(top[key][0], f"unknown key {key!r} (the file has `lists` and "
                                "`rules`)")
        if "lists" in top:
            self._lists(top["lists"][1])
        if "rules" not in top:
            raise self.fail(document, "no `rules` list")
        listed = top["rules"][1]
        if isinstance(listed, yaml.ScalarNode) and listed.tag.endswith(":null"):
            return ()  # `rules:` with nothing under it
        if not isinstance(listed, yaml.SequenceNode):
            raise self.fail(listed, "`rules` must be a list of rules (- id: ...)")
        if len(listed.value) > MAX_RULES:
            raise self.fail(listed, f"more than {MAX_RULES} rules")
        rules: list[Rule] = []
        seen: dict[str, int] = {}
        for index, node in enumerate(listed.value, start=1):
            rule = self._rule(node, index)
            if rule.id in seen:
                raise self.fail(node, f"defined twice (first at line {seen[rule.id]})",
                                rule=rule.id)
            seen[rule.id] = rule.line
            rules.append(rule)
        return tuple(rules)

    def _lists(self, node: Any) -> None:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return
        declared = self._mapping(node, "`lists` must be a mapping of list names to fields "
                                 "(blocked_cards: card_id)")
        if len(declared) > MAX_LISTS:
            raise self.fail(node, f"more than {MAX_LISTS} lists")
        for name, (key, value) in declared.items():
            if not _LIST_NAME.fullmatch(name) or name in _CEL_WORDS or name in self.fields:
                raise self.fail(key, f"list name {name!r} must be 1-64 lower-case letters, "
                                "digits or _ (starting with a letter), and not a field's name "
                                "or a word of CEL")
            path = value.value if isinstance(value, yaml.ScalarNode) else None
            known = self.fields.get(path or "")
            if not (known is not None and known.type == "string"
                    or _EXTRA_KEY.fullmatch(path or "") and "extra" in self.fields):
                raise self.fail(value, f"list {name!r}: the field must be a text field of "
                                "the transaction (card_id, terminal_id, ...) or extra.<key>")
            self.lists[name] = cast("str", path)

    def use(self, name: str) -> ListUse:
        path = self.lists[name]
        if path in self.fields:
            return ListUse(name, path, self.fields[path].get)
        key = path.split(".", 1)[1]
        return ListUse(name, path, lambda tx, row, score: tx.extra.get(key))

    def _mapping(self, node: Any, message: str) -> dict[str, tuple[Any, Any]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, message)
        found: dict[str, tuple[Any, Any]] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else repr(key)
            if name in found:
                raise self.fail(key, f"key {name!r} given twice")
            found[name] = (key, value)
        return found

    def _text(self, parts: dict[str, tuple[Any, Any]], key: str, rule: str | None) -> str:
        key_node, node = parts[key]
        if not isinstance(node, yaml.ScalarNode) or not node.value.strip():
            raise self.fail(node, f"`{key}` must be a non-empty text", rule=rule)
        return cast("str", node.value)

    def _rule(self, node: Any, index: int) -> Rule:
        parts = self._mapping(node, f"rule {index} must be a mapping (id, when, action)")
        if "id" not in parts:
            raise self.fail(node, f"rule {index} has no `id`")
        rule_id = self._text(parts, "id", None)
        if not _ID.fullmatch(rule_id):
            raise self.fail(parts["id"][1], f"id {rule_id!r} must be 1-64 letters, digits or "
                            "- _ . : (starting with a letter or digit)")
        for key, (key_node, _) in parts.items():
            if key not in _KEYS:
                raise self.fail(key_node, f"unknown key {key!r} (a rule has {', '.join(_KEYS)})",
                                rule=rule_id)
        for key in ("when", "action"):
            if key not in parts:
                raise self.fail(node, f"no `{key}`", rule=rule_id)
        action = self._text(parts, "action", rule_id)
        if action not in ACTIONS:
            raise self.fail(parts["action"][1], f"action {action!r} is not one of allow, "
                            "approve, review, decline", rule=rule_id)
        description = self._text(parts, "description", rule_id) if "description" in parts else ""
        when_node = parts["when"][1]
        when = self._text(parts, "when", rule_id)
        if len(when) > MAX_EXPRESSION:
            raise self.fail(when_node, f"`when` is longer than {MAX_EXPRESSION} characters",
                            rule=rule_id)
        program = self._compile(when, when_node, rule_id)
        return Rule(rule_id, when, action, node.start_mark.line + 1,
                    description, program, frozenset(self.names[rule_id]))

    def _compile(self, when: str, node: Any, rule: str) -> cel.Program:
        try:
            program = cel.compile(when)
        except Exception as exc:  # noqa: BLE001 - a parse error (ValueError) or a parser bug
            found = _CEL_ERROR.search(str(exc))
            if not found:
                raise self.fail(node, f"`when` does not compile: {exc}", rule=rule) from exc
            at_line, at_column = int(found.group(1)), int(found.group(2))
            written = when.rstrip().split("\n")
            if at_line > len(written):  # at the end of the input: after its last character
                at_line, at_column = len(written), len(written[-1]) + 1
            raise self._at(node, when, at_line, at_column, found.group(3), rule) from exc
        names = self._names(program, when, node, rule)
        self.names[rule] = names
        self._probe(program, names, node, rule)
        return program

    def _names(self, program: cel.Program, when: str, node: Any, rule: str) -> tuple[str, ...]:
        """The fields the expression reads; a name that is neither a field nor bound by a
        macro (``list.exists(x, ...)``) is refused where it first appears."""
        names = []
        for name in program.variables():
            if name in self.lists:
                self._list_form(when, name, node, rule)
                names.append(name)
                continue
            if name in self.fields:
                names.append(name)
                continue
            bound = rf"\.\s*(?:{'|'.join(_MACROS)})\s*\(\s*{re.escape(name)}\s*,"
            if re.search(bound, when):
                continue
            line, column = _first_use(when, name)
            raise self._at(node, when, line, column, f"unknown name {name!r} (the fields are "
                           "listed in the README, under Writing a rule; a list is declared "
                           "under `lists:`, docs/lists.md)", rule)
        return tuple(names)

    def _list_form(self, when: str, name: str, node: Any, rule: str) -> None:
        """A list is named only as ``<its field> in <list>`` (its variable holds the
        transaction's own value of that field, or nothing)."""
        path = self.lists[name]
        blanked = _STRING_LITERAL.sub(lambda m: " " * len(m.group()), when)
        before = re.compile(rf"(?<![\w.]){re.escape(path)}\s+in\s+$")
        for found in re.finditer(rf"(?<![\w.]){re.escape(name)}\b", blanked):
            after = blanked[found.end():].lstrip()[:1]
            if before.search(blanked[: found.start()]) and after not in (".", "[", "("):
                continue
            head = when[: found.start()]
            line, column = head.count("\n") + 1, found.start() - (head.rfind("\n") + 1) + 1
            raise self._at(node, when, line, column, f"list {name!r} holds {path} values: "
                           f"name it as `{path} in {name}`", rule)

    def _probe(self, program: cel.Program, names: tuple[str, ...], node: Any, rule: str) -> None:
        """Evaluate on two test transactions of extreme values (zeros and empty texts;
        a million and the far future). Refused: an unknown function, an answer that is not
        true or false, and a type error on both (``amount * 2``: double times int). Errors
        that depend on the values (a missing key, a division by zero, 0.0 / 0.0 compared)
        are left to run time, where the rule then does not fire."""
        type_errors: list[Exception] = []
        for probe in (0, 1):
            variables = {name: ([], ["probe"])[probe] if name in self.lists
                         else self.fields[name].probes[probe] for name in names}
            try:
                result = program.execute(cel.Context(variables=variables))
            except TypeError as exc:
                type_errors.append(exc)
                continue
            except RuntimeError as exc:
                if str(exc).startswith("Undefined variable or function"):
                    raise self.fail(node, f"`when` uses an unknown function: {_reason(exc)}",
                                    rule=rule) from exc
                continue
            except Exception:  # noqa: BLE001, S112 - depends on the values: decided at run time
                continue
            if not isinstance(result, bool):
                raise self.fail(node, f"`when` gives {result!r}, not true or false", rule=rule)
        if len(type_errors) == 2:
            raise self.fail(node, f"`when` fails on every test transaction: "
                            f"{_reason(type_errors[0])}", rule=rule) from type_errors[0]

    def _at(self, node: Any, when: str, line: int, column: int, message: str,
            rule: str) -> RulesError:
        """An error at ``line``:``column`` of the expression, placed in the file where the
        expression's text can be found there (plain, quoted or ``|`` block scalars)."""
        lines = when.split("\n")
        expression_line = lines[line - 1] if 0 < line <= len(lines) else ""
        caret = f"\n    {expression_line}\n    {' ' * (column - 1)}^"
        at_line, at_column = self._file_position(node, line, column, expression_line)
        return self.fail(node, f"`when` line {line} column {column}: {message}{caret}",
                         rule=rule, line=at_line, column=at_column)

    def _file_position(
        self, node: Any, line: int, column: int, expression_line: str
    ) -> tuple[int, int | None]:
        start = node.start_mark
        if node.style in (None, "'", '"') and line == 1:
            return start.line + 1, start.column + column + (1 if node.style else 0)
        if node.style == "|":
            index = start.line + line  # the block starts on the line after the `|`
            if index < len(self.lines) and self.lines[index].endswith(expression_line):
                return index + 1, len(self.lines[index]) - len(expression_line) + column
        return start.line + 1, None


def _first_use(when: str, name: str) -> tuple[int, int]:
    """Line and column (1-based) of the first use of ``name`` outside string literals."""
    blanked = _STRING_LITERAL.sub(lambda m: " " * len(m.group()), when)
    found = re.search(rf"(?<![\w.]){re.escape(name)}\b", blanked)
    offset = found.start() if found else 0
    before = when[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1
