"""The networks. Importing this package registers every built-in model with the registry."""
