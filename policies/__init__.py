"""CrossGuard policy pack for the CDAO platform: rules guarding IAM, cost, data protection, network."""
