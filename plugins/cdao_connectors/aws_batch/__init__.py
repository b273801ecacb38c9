"""AWS Batch: the task type and a connector that owns job definitions, queues and status polling."""
