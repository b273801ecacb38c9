"""The offline plan: the real program under mocks, with policy results and a cost estimate."""
