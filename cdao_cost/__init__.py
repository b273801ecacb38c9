"""Monthly cost of a stack from its resource list (cdao_resources), priced from prices.yaml.

A leaf package: it imports only cdao_resources and cdao_catalog, so the `cdao` CLI and the policy
pack (policies/, which must not import infra/ or the CLI) price the same resources the same way.
"""

from cdao_cost.estimate import CostEstimate, CostLine, estimate_cost, price_table

__all__ = ["CostEstimate", "CostLine", "estimate_cost", "price_table"]
