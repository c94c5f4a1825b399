"""The consumption computer: agent activity and port samples become license usage per product instance."""
