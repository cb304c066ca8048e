import unittest

import app


class AppTest(unittest.TestCase):
    def test_greeting_names_the_service(self):
        self.assertIn("web", app.greeting())

    def test_the_answer_says_which_host_and_build(self):
        text = app.answer("web1", "0123456789abcdef", "built at noon")
        self.assertEqual(text, "hello from web (host web1, revision 0123456789ab, built at noon)")

    def test_settings_read_env_lines(self):
        self.assertEqual(app.settings("PORT=8101\nTAG=web1\n"), {"PORT": "8101", "TAG": "web1"})


if __name__ == "__main__":
    unittest.main()
