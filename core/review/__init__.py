"""The review page's pure logic: aspect-locked crop boxes and the user's region labels."""
