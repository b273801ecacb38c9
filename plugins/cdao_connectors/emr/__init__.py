"""EMR on EC2: Spark steps on an existing cluster or on a transient cluster that terminates itself."""
