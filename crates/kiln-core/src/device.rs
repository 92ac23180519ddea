//! Device classes: a bot that crawls as a phone gets a mobile render, cached separately.

use serde::{Deserialize, Serialize};

/// The class of device a render imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceClass {
    Desktop,
    Mobile,
}

impl DeviceClass {
    /// Classifies a User-Agent. Crawlers that imitate phones (Googlebot smartphone, Bingbot mobile,
    /// Applebot on iPhone) say so the way phone browsers do: `Mobile`, `Android` or `iPhone`.
    pub fn from_user_agent(user_agent: &str) -> Self {
        const MOBILE_TOKENS: &[&str] = &["mobile", "android", "iphone", "ipod", "windows phone"];
        let ua = user_agent.to_ascii_lowercase();
        if MOBILE_TOKENS.iter().any(|token| ua.contains(token)) {
            DeviceClass::Mobile
        } else {
            DeviceClass::Desktop
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Desktop => "desktop",
            DeviceClass::Mobile => "mobile",
        }
    }

    /// Viewport (width, height) and whether the render should emulate touch and a mobile screen.
    pub fn viewport(self) -> (u32, u32) {
        match self {
            DeviceClass::Desktop => (1366, 900),
            DeviceClass::Mobile => (412, 915),
        }
    }

    /// The User-Agent Chromium presents when rendering for this class. It names Kiln so that origins
    /// can recognise (and exclude from analytics) render traffic, and keeps the browser tokens that
    /// sites use to pick their markup.
    pub fn render_user_agent(self) -> &'static str {
        match self {
            DeviceClass::Desktop => {
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 KilnRender/1.0"
            }
            DeviceClass::Mobile => {
                "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36 KilnRender/1.0"
            }
        }
    }
}

impl DeviceClass {
    /// The User-Agent of a person's browser of this class: the render User-Agent without Kiln's
    /// token. A parity check loads the live page with it, as people see the page.
    pub fn person_user_agent(self) -> &'static str {
        match self {
            DeviceClass::Desktop => {
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"
            }
            DeviceClass::Mobile => {
                "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36"
            }
        }
    }

    /// The device's pixels per CSS pixel, as renders emulate it.
    pub fn scale_factor(self) -> f64 {
        match self {
            DeviceClass::Desktop => 1.0,
            DeviceClass::Mobile => 2.0,
        }
    }
}

impl std::fmt::Display for DeviceClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceClass::{self, *};

    #[test]
    fn a_persons_user_agent_is_the_render_one_without_kilns_token() {
        for device in [Desktop, Mobile] {
            let person = device.person_user_agent();
            assert!(!person.contains("KilnRender"));
            assert!(device.render_user_agent().starts_with(person));
            assert_eq!(DeviceClass::from_user_agent(person), device);
        }
    }

    #[test]
    fn classifies_crawler_user_agents() {
        let cases = [
            (
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                Desktop,
            ),
            (
                "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.6422.175 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                Mobile,
            ),
            (
                "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
                Desktop,
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 7_0 like Mac OS X) AppleWebKit/537.51.1 (KHTML, like Gecko) Version/7.0 Mobile/11A465 Safari/9537.53 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
                Mobile,
            ),
            (
                "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
                Desktop,
            ),
            ("Twitterbot/1.0", Desktop),
            ("", Desktop),
        ];
        for (ua, expected) in cases {
            assert_eq!(DeviceClass::from_user_agent(ua), expected, "{ua}");
        }
    }
}
