"""The closebench reference server and the close strategies it implements."""
