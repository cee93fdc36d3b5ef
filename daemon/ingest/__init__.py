"""A settled inbox file becomes a registered image, and images become filed sets (core.grouping)."""
