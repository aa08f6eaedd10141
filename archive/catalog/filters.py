"""The one list of search filters, as plain data with no imports: the CLI builds its options from it when it starts,
so ``modelarc --help`` need not load the catalog that ``search.py`` queries."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SearchFilter:
    """One search filter, as every surface names it: ``ls``/``timeline`` options (``--cutoff-before``), /v1 query
    parameters and the web form's fields (``cutoff_before``), and ``build_filters``'s keyword."""

    key: str
    help: str  # CLI help and /v1 description
    label: str  # the web form's label
    example: str  # the web form's placeholder

    @property
    def option(self) -> str:
        return "--" + self.key.replace("_", "-")


# The one list of search filters (issue 11): the CLI builds its options from it, the web form its fields, and a test
# holds /v1's declared query parameters to it (tests/rest/test_v1_catalog.py).
SEARCH_FILTERS: tuple[SearchFilter, ...] = (
    SearchFilter("name", "Model name contains this (any case), e.g. llama or acme/.", "model name", "llama"),
    SearchFilter(
        "cutoff_before",
        "Training cutoff entirely before this date (YYYY[-MM[-DD]]).",
        "cutoff before",
        "2024-01-01",
    ),
    SearchFilter("cutoff_after", "Training cutoff entirely after this date.", "cutoff after", "2022-06-30"),
    SearchFilter(
        "arch", "model_type or architecture class, e.g. llama or LlamaForCausalLM.", "architecture", "llama"
    ),
    SearchFilter("min_params", "At least this many parameters (e.g. 135M, 7B).", "min params", "1B"),
    SearchFilter("max_params", "At most this many parameters.", "max params", "70B"),
    SearchFilter(
        "trained_on", "Trained or evaluated on this dataset (name).", "trained on dataset", "the-pile"
    ),
    SearchFilter("license", "License id.", "license", "apache-2.0"),
    SearchFilter(
        "descendant_of", "Only descendants (through lineage) of this REF.", "descendant of", "ns/name:tag"
    ),
    SearchFilter("as_of", "Answer as the catalog stood at the end of this date.", "as of", "2025-01-01"),
)
