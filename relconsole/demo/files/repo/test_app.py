import unittest

import app


class GreetingTest(unittest.TestCase):
    def test_greeting_names_the_service(self):
        self.assertIn("web", app.greeting())


if __name__ == "__main__":
    unittest.main()
