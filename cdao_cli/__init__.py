"""Tooling around the Pulumi program: the `cdao` command's subcommands that are not the program.

`cdao doctor` lives here; the plan, policy and promote commands join it when they move out of
`infra/` (the program folder holds only what `pulumi up` runs).
"""
