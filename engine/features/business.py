"""The ``[business]`` section of a spec: the columns that make segments actionable, the campaign
figures, segment names and the rules that recommend an action.

```toml
[business]
revenue = "MntWines + MntFruits"      # SQL expression: what a customer is worth (e.g. total spending)
response = "Response"                 # 0/1 column: answered the last campaign
recency = "Recency"                   # days since the last purchase (high = lapsed)
frequency = "NumWebPurchases + NumStorePurchases"
deals = "NumDealsPurchases"           # purchases made with a discount
tenure = "(DATE_PART('epoch', DATE '2014-12-31') - DATE_PART('epoch', STRPTIME(Dt_Customer, '%d-%m-%Y'))) / 86400"
cost_per_contact = 3                  # a number, or a column name (its mean over the input is used)
revenue_per_response = "Z_Revenue"

[business.names]                      # override generated names, by segment number
0 = "Big spenders"

[business.wording]                    # how a feature reads in names: [low, high]
recency = ["Recent buyers", "Lapsed buyers"]

[[business.actions]]                  # first rule whose condition holds wins; replaces the defaults
action = "VIP / loyalty programme"
when = "revenue_index >= 1.5"         # SQL over profiles.parquet's columns

[business.offers]                     # what to offer each segment: its over-indexed categories and channels
top = 2                               # how many to name (default 2)
min_support = 10                      # transactions: a product needs this many buyers in the segment
[business.offers.categories]          # label = spend (or count) column or SQL expression
Wines = "MntWines"
Meat = "MntMeatProducts"
[business.offers.channels]
Web = "NumWebPurchases"
Store = "NumStorePurchases"
```
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from engine.errors import InputError, did_you_mean

#: Declared columns (SQL expressions), in the order they appear in profiles.parquet.
MEASURES = ("revenue", "response", "recency", "frequency", "deals", "tenure")
FIGURES = ("cost_per_contact", "revenue_per_response")
KEYS = (*MEASURES, *FIGURES, "names", "wording", "actions", "offers")
ACTION_KEYS = ("action", "when")
OFFER_GROUPS = ("categories", "channels")  # in the order an offer line names them
OFFER_KEYS = (*OFFER_GROUPS, "top", "min_support")
OFFER_TOP = 2  # over-indexed categories (and channels) an offer names
MIN_SUPPORT = 10  # transactions: buyers of a product in a segment before its lift counts


@dataclass(frozen=True)
class Offers:
    """``[business.offers]``: spend or count columns by category and by channel (label, SQL
    expression), how many to name, and the minimum support of a product's lift."""

    categories: tuple[tuple[str, str], ...] = ()
    channels: tuple[tuple[str, str], ...] = ()
    top: int = OFFER_TOP
    min_support: int = MIN_SUPPORT

    def items(self) -> list[tuple[str, str, str]]:
        """(group, label, expression) of every declared column, categories first."""
        return [(g, label, expr) for g in OFFER_GROUPS for label, expr in getattr(self, g)]


@dataclass(frozen=True)
class ActionRule:
    """Recommend ``action`` for a segment whose profile row satisfies ``when`` (Polars SQL)."""

    action: str
    when: str


#: The documented default rules, tried in order; the first that holds (and whose columns exist,
#: i.e. whose measures are declared) gives the action. ``revenue_index`` is the segment's mean
#: revenue over the population's; ``*_z`` are z-scores of the segment mean against the population.
DEFAULT_ACTIONS = (
    ActionRule("VIP / loyalty programme", "revenue_index >= 1.5"),
    ActionRule("Reactivation campaign", "recency_z >= 0.5"),
    ActionRule("Onboarding journey", "tenure_z <= -0.5"),
    ActionRule("Discount offers", "deals_z >= 0.5"),
    ActionRule("Low-cost channel (email, web)", "revenue_index < 0.5"),
    ActionRule("Cross-sell and retention", "TRUE"),
)

#: How some usual features read in names: (low, high).
DEFAULT_WORDING = {
    "recency": ("Recent buyers", "Lapsed buyers"),
    "recency_days": ("Recent buyers", "Lapsed buyers"),  # the RFM preset's features
    "frequency": ("Infrequent buyers", "Frequent buyers"),
    "monetary": ("Low value", "High value"),
    "tenure_days": ("New customers", "Long-standing customers"),
    "avg_basket": ("Small baskets", "Big baskets"),
    "children": ("No children", "With children"),
    "age": ("Younger", "Older"),
}


@dataclass(frozen=True)
class Business:
    """Declared business columns and figures; every field is optional."""

    revenue: str | None = None
    response: str | None = None
    recency: str | None = None
    frequency: str | None = None
    deals: str | None = None
    tenure: str | None = None
    cost_per_contact: float | str | None = None  # a number, or a column whose mean is used
    revenue_per_response: float | str | None = None
    names: tuple[tuple[int, str], ...] = ()
    wording: tuple[tuple[str, str, str], ...] = ()  # (feature, low, high)
    actions: tuple[ActionRule, ...] | None = None  # None: DEFAULT_ACTIONS
    offers: Offers = Offers()

    def measures(self) -> dict[str, str]:
        """The declared measures: name -> SQL expression."""
        return {m: getattr(self, m) for m in MEASURES if getattr(self, m) is not None}

    def with_figures(self, cost_per_contact: float | None = None,
                     revenue_per_response: float | None = None) -> Business:
        """A copy with the figures given on the command line (None keeps the spec's)."""
        given = {"cost_per_contact": cost_per_contact, "revenue_per_response": revenue_per_response}
        for key, value in given.items():
            if value is not None:
                check_figure(f"--{key.replace('_', '-')}", value)
        return replace(self, **{k: float(v) for k, v in given.items() if v is not None})

    def word(self, feature: str, high: bool) -> str:
        """How a feature reads in a name: "High income", or the wording declared for it."""
        for name, low_text, high_text in self.wording:
            if name == feature:
                return high_text if high else low_text
        if feature in DEFAULT_WORDING:
            return DEFAULT_WORDING[feature][int(high)]
        label = feature.replace("_", " ")
        return f"{'High' if high else 'Low'} {label}"

    def to_dict(self) -> dict[str, Any]:
        return {
            **{m: getattr(self, m) for m in (*MEASURES, *FIGURES)},
            "names": {str(k): v for k, v in self.names},
            "wording": {f: [lo, hi] for f, lo, hi in self.wording},
            "actions": [{"action": r.action, "when": r.when} for r in self.rules()],
            "offers": {"categories": dict(self.offers.categories), "channels": dict(self.offers.channels),
                       "top": self.offers.top, "min_support": self.offers.min_support},
        }

    def rules(self) -> tuple[ActionRule, ...]:
        return DEFAULT_ACTIONS if self.actions is None else self.actions


def check_figure(where: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InputError(f"{where} must be a number of 0 or more, not {value!r}")


def text(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where} must be a non-empty string, not {value!r}")
    return value


def parse_business(table: Any, where: str) -> Business:
    """Validate the ``[business]`` table of a spec (unknown keys and wrong types are refused)."""
    where = f"{where}: [business]"
    if not isinstance(table, dict):
        raise InputError(f"{where} must be a table")
    for key in table:
        if key not in KEYS:
            raise InputError(f"{where}: unknown key {key!r}{did_you_mean(key, KEYS)}")
    values: dict[str, Any] = {m: text(f"{where} {m}", table[m]) for m in MEASURES if m in table}
    for key in FIGURES:
        if key not in table:
            continue
        value = table[key]
        if isinstance(value, str):
            values[key] = text(f"{where} {key}", value)
        else:
            check_figure(f"{where} {key}", value)
            values[key] = float(value)
    names = table.get("names", {})
    if not isinstance(names, dict):
        raise InputError(f"{where} names must be a table of segment number = name")
    parsed_names = []
    for key, value in names.items():
        if not key.isdigit():
            raise InputError(f"{where} names: key {key!r} is not a segment number")
        parsed_names.append((int(key), text(f"{where} names.{key}", value)))
    wording = table.get("wording", {})
    if not isinstance(wording, dict):
        raise InputError(f"{where} wording must be a table of feature = [low, high]")
    parsed_wording = []
    for feature, value in wording.items():
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) and v.strip() for v in value)):
            raise InputError(f"{where} wording.{feature} must be two phrases [low, high], not {value!r}")
        parsed_wording.append((feature, value[0], value[1]))
    offers = parse_offers(table.get("offers", {}), where)
    actions = None
    if "actions" in table:
        rules = table["actions"]
        if not isinstance(rules, list) or not rules or not all(isinstance(r, dict) for r in rules):
            raise InputError(f"{where} actions must be a list of [[business.actions]] tables")
        actions = []
        for i, rule in enumerate(rules, 1):
            for key in rule:
                if key not in ACTION_KEYS:
                    raise InputError(f"{where} actions rule {i}: unknown key {key!r}{did_you_mean(key, ACTION_KEYS)}")
            actions.append(ActionRule(text(f"{where} actions rule {i} action", rule.get("action")),
                                      text(f"{where} actions rule {i} when", rule.get("when"))))
        actions = tuple(actions)
    return Business(**values, names=tuple(sorted(parsed_names)), wording=tuple(parsed_wording), actions=actions,
                    offers=offers)


def parse_offers(table: Any, where: str) -> Offers:
    """``[business.offers]``: ``categories`` and ``channels`` tables of label = expression, ``top``
    and ``min_support`` positive whole numbers."""
    where = f"{where} offers"
    if not isinstance(table, dict):
        raise InputError(f"{where} must be a table")
    for key in table:
        if key not in OFFER_KEYS:
            raise InputError(f"{where}: unknown key {key!r}{did_you_mean(key, OFFER_KEYS)}")
    groups: dict[str, tuple[tuple[str, str], ...]] = {}
    for group in OFFER_GROUPS:
        columns = table.get(group, {})
        if not isinstance(columns, dict):
            raise InputError(f"{where}.{group} must be a table of label = column or SQL expression")
        groups[group] = tuple((str(label), text(f"{where}.{group}.{label}", expr)) for label, expr in columns.items())
        if len(groups[group]) == 1:
            raise InputError(f"{where}.{group} needs two or more columns to compare, not one")
    numbers = {}
    for key, default in (("top", OFFER_TOP), ("min_support", MIN_SUPPORT)):
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{where}.{key} must be a whole number, 1 or more, not {value!r}")
        numbers[key] = value
    return Offers(**groups, **numbers)
