"""What the template's tests share: helpers imported from here, never from a test module."""
