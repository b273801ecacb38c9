"""Codeweave (external GPU cloud): the HTTP contract, the task type and its connector."""
