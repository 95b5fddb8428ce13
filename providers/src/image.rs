//! Image inputs: the canonical image part and the checks every inbound wire
//! format shares. An image arrives as a URL the target fetches itself or as
//! inline base64 bytes; inline bytes must decode and be PNG, JPEG, GIF or
//! WebP by their magic bytes (the declared media type is not trusted: the
//! sniffed one is what adapters send). Size and count limits, and which URL
//! schemes are allowed, are the gateway's to apply with its config
//! ([`Image::decoded_len`], [`Image::url`]). The `Message` and
//! `ChatRequest` methods that read parts and images live here too.

use serde::{Deserialize, Serialize};

use crate::validate::bad;
use crate::{ChatRequest, EmbeddingInput, Message, ProviderError, Role};

/// One image of a message, in the place the client put it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub source: ImageSource,
    /// OpenAI's `detail`; other targets have no such setting and ignore it.
    pub detail: Option<ImageDetail>,
    /// Where the client sent it, in its own wire format
    /// (`messages[0].content[1].image_url.url`): errors about the image name
    /// this field. Never sent upstream.
    pub field: String,
}

/// Where an image's bytes are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    /// A URL the target fetches. It is text the detectors read
    /// (`TextField::ImageUrl`); what it points at is not.
    Url(String),
    /// Inline bytes as the client's base64 (checked to decode), with the
    /// media type their magic bytes say.
    Base64 { media_type: MediaType, data: String },
}

/// The image formats every vision target accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    Png,
    Jpeg,
    Gif,
    Webp,
}

impl MediaType {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Png => "image/png",
            MediaType::Jpeg => "image/jpeg",
            MediaType::Gif => "image/gif",
            MediaType::Webp => "image/webp",
        }
    }

    /// The format `bytes` start with, if it is one of the four.
    pub fn sniff(bytes: &[u8]) -> Option<MediaType> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(MediaType::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(MediaType::Jpeg)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(MediaType::Gif)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(MediaType::Webp)
        } else {
            None
        }
    }

    /// The format a URL's path names by its extension (Gemini's `fileData`
    /// wants a MIME type beside the URI); `None` when it does not say.
    pub fn from_url(url: &str) -> Option<MediaType> {
        let path = url.split(['?', '#']).next().unwrap_or(url);
        let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "png" => Some(MediaType::Png),
            "jpg" | "jpeg" => Some(MediaType::Jpeg),
            "gif" => Some(MediaType::Gif),
            "webp" => Some(MediaType::Webp),
            _ => None,
        }
    }
}

/// OpenAI's image `detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageDetail {
    Auto,
    Low,
    High,
}

impl ImageDetail {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageDetail::Auto => "auto",
            ImageDetail::Low => "low",
            ImageDetail::High => "high",
        }
    }

    pub(crate) fn parse(s: &str, field: &str) -> Result<ImageDetail, ProviderError> {
        match s {
            "auto" => Ok(ImageDetail::Auto),
            "low" => Ok(ImageDetail::Low),
            "high" => Ok(ImageDetail::High),
            other => Err(bad(
                field,
                format!("\"{field}\" must be \"auto\", \"low\" or \"high\", got \"{other}\""),
            )),
        }
    }
}

/// One piece of a message in order: text, or an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Text(String),
    Image(Image),
}

/// A message's pieces as adapters read them ([`crate::Message::pieces`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Piece<'a> {
    Text(&'a str),
    Image(&'a Image),
}

impl Image {
    /// An OpenAI `image_url.url` or a Responses `image_url`: an http(s) URL,
    /// or a `data:` URI holding base64 image bytes.
    pub(crate) fn from_url(
        url: &str,
        detail: Option<ImageDetail>,
        field: &str,
    ) -> Result<Image, ProviderError> {
        let source = if let Some(rest) = url.strip_prefix("data:") {
            let Some((meta, data)) = rest.split_once(',') else {
                return Err(bad(
                    field,
                    format!("\"{field}\" is a data URI without a \",\" before its data"),
                ));
            };
            if !meta.ends_with(";base64") {
                return Err(bad(
                    field,
                    format!("\"{field}\" must be a base64 data URI (data:image/png;base64,...)"),
                ));
            }
            inline(data, field)?
        } else {
            check_url_syntax(url, field)?;
            ImageSource::Url(url.to_owned())
        };
        Ok(Image {
            source,
            detail,
            field: field.to_owned(),
        })
    }

    /// An Anthropic `{"type":"base64","media_type","data"}` source. The
    /// declared type must be one of the four; the bytes decide which is sent.
    pub(crate) fn from_base64(
        media_type: &str,
        data: &str,
        field: &str,
    ) -> Result<Image, ProviderError> {
        if !["image/png", "image/jpeg", "image/gif", "image/webp"].contains(&media_type) {
            return Err(bad(
                field,
                format!(
                    "unsupported image media type \"{media_type}\" in \"{field}\" \
                     (image/png, image/jpeg, image/gif or image/webp)"
                ),
            ));
        }
        Ok(Image {
            source: inline(data, field)?,
            detail: None,
            field: field.to_owned(),
        })
    }

    /// An Anthropic `{"type":"url","url"}` source.
    pub(crate) fn from_plain_url(url: &str, field: &str) -> Result<Image, ProviderError> {
        check_url_syntax(url, field)?;
        Ok(Image {
            source: ImageSource::Url(url.to_owned()),
            detail: None,
            field: field.to_owned(),
        })
    }

    /// The URL the target fetches, for a URL image.
    pub fn url(&self) -> Option<&str> {
        match &self.source {
            ImageSource::Url(u) => Some(u),
            ImageSource::Base64 { .. } => None,
        }
    }

    /// The size of inline bytes once decoded (0 for a URL image, whose size
    /// the target learns when it fetches it).
    pub fn decoded_len(&self) -> usize {
        match &self.source {
            ImageSource::Url(_) => 0,
            ImageSource::Base64 { data, .. } => base64_decoded_len(data),
        }
    }

    /// The image as an OpenAI `image_url.url`: the URL, or a data URI.
    pub fn as_openai_url(&self) -> String {
        match &self.source {
            ImageSource::Url(u) => u.clone(),
            ImageSource::Base64 { media_type, data } => {
                format!("data:{};base64,{data}", media_type.as_str())
            }
        }
    }
}

// A message's parts and a request's images, beside the types they read.
impl Message {
    /// A message from its wire parts in order: text-only parts are joined by
    /// newlines into `content`; parts with an image are kept as they are.
    pub fn from_parts(role: Role, parts: Vec<Part>) -> Self {
        if parts.iter().any(|p| matches!(p, Part::Image(_))) {
            let mut m = Message::new(role, "");
            m.parts = parts;
            return m;
        }
        let texts: Vec<String> = parts
            .into_iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t),
                Part::Image(_) => None,
            })
            .collect();
        Message::new(role, texts.join("\n"))
    }

    /// The message's text and images in order: `content` (when not empty),
    /// then `parts`. Adapters write a message from these.
    pub fn pieces(&self) -> impl Iterator<Item = Piece<'_>> {
        let head = (!self.content.is_empty()).then_some(Piece::Text(&self.content));
        head.into_iter().chain(self.parts.iter().map(|p| match p {
            Part::Text(t) => Piece::Text(t),
            Part::Image(i) => Piece::Image(i),
        }))
    }

    /// The message's images, in order.
    pub fn images(&self) -> impl Iterator<Item = &Image> {
        self.parts.iter().filter_map(|p| match p {
            Part::Image(i) => Some(i),
            Part::Text(_) => None,
        })
    }

    /// All of the message's text, its parts joined by newlines (as text-only
    /// array content is), for backends and estimates that read text only.
    pub fn text(&self) -> String {
        let texts: Vec<&str> = self
            .pieces()
            .filter_map(|p| match p {
                Piece::Text(t) => Some(t),
                Piece::Image(_) => None,
            })
            .collect();
        texts.join("\n")
    }
}

impl ChatRequest {
    /// Whether the request holds an image: only a target with `vision` may
    /// serve it, and the detectors cannot read it.
    pub fn has_images(&self) -> bool {
        self.messages.iter().any(|m| m.images().next().is_some())
    }

    /// Whether the request holds content no detector can read (images,
    /// token-id embedding inputs). The gateway raises such a request to the
    /// configured `privacy.uninspectable` level, in one place.
    pub fn has_uninspectable(&self) -> bool {
        let tokens = self.embedding.as_ref().is_some_and(|p| {
            p.inputs
                .iter()
                .any(|i| matches!(i, EmbeddingInput::Tokens(_)))
        });
        tokens || self.has_images()
    }
}

/// Only absolute http(s) URLs with a host; whether plain http is allowed is
/// the gateway's config (`server.image_http_loopback`).
fn check_url_syntax(url: &str, field: &str) -> Result<(), ProviderError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    match host {
        Some(h) if !h.is_empty() && !url.chars().any(char::is_whitespace) => Ok(()),
        _ => Err(bad(
            field,
            format!(
                "\"{field}\" must be an https URL or a data URI, got \"{}\"",
                cut(url)
            ),
        )),
    }
}

fn cut(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(57).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// Base64 that decodes to one of the four image formats.
fn inline(data: &str, field: &str) -> Result<ImageSource, ProviderError> {
    let bytes = base64_decode(data).ok_or_else(|| {
        bad(
            field,
            format!("\"{field}\" does not hold valid base64 image data"),
        )
    })?;
    let media_type = MediaType::sniff(&bytes).ok_or_else(|| {
        bad(
            field,
            format!("\"{field}\" is not a PNG, JPEG, GIF or WebP image"),
        )
    })?;
    Ok(ImageSource::Base64 {
        media_type,
        data: data.to_owned(),
    })
}

fn base64_value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Standard base64, padding optional; `None` for anything else (whitespace
/// included: no client library wraps the base64 it sends).
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let body = b
        .strip_suffix(b"==")
        .or_else(|| b.strip_suffix(b"="))
        .unwrap_or(b);
    if body.is_empty()
        || body.len() % 4 == 1
        || (body.len() != b.len() && !b.len().is_multiple_of(4))
    {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    for chunk in body.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= base64_value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// How many bytes `s` decodes to, without decoding it.
fn base64_decoded_len(s: &str) -> usize {
    let body = s.trim_end_matches('=').len();
    body / 4 * 3 + (body % 4).saturating_sub(1)
}

/// A 70-byte 1x1 PNG, base64, for tests.
#[cfg(test)]
pub(crate) const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding_and_refuses_the_rest() {
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("aGk").unwrap(), b"hi");
        assert_eq!(base64_decode("aGVsbG8gd29ybGQ=").unwrap(), b"hello world");
        for bad in ["", "a", "aG k", "aGk*", "a===", "aG=k"] {
            assert!(base64_decode(bad).is_none(), "{bad:?}");
        }
        let png = base64_decode(PNG_1X1).unwrap();
        assert_eq!(png.len(), 70);
        assert_eq!(base64_decoded_len(PNG_1X1), 70);
        assert_eq!(base64_decoded_len("aGk"), 2);
    }

    #[test]
    fn data_uris_are_sniffed_and_bad_ones_name_the_field() {
        let f = "messages[0].content[1].image_url.url";
        let uri = format!("data:image/jpeg;base64,{PNG_1X1}");
        let img = Image::from_url(&uri, Some(ImageDetail::Low), f).unwrap();
        // The bytes are a PNG whatever the URI declares.
        assert_eq!(
            img.source,
            ImageSource::Base64 {
                media_type: MediaType::Png,
                data: PNG_1X1.into()
            }
        );
        assert_eq!(
            img.as_openai_url(),
            format!("data:image/png;base64,{PNG_1X1}")
        );
        let refused = |url: &str| match Image::from_url(url, None, f) {
            Err(ProviderError::BadRequest { message, param }) => {
                assert_eq!(param.as_deref(), Some(f));
                message
            }
            other => panic!("{url}: {other:?}"),
        };
        assert!(refused("data:image/png;base64,@@@@").contains("valid base64"));
        assert!(refused("data:image/png;base64,aGVsbG8gd29ybGQ=").contains("not a PNG"));
        assert!(refused("data:image/png,raw").contains("base64 data URI"));
        assert!(refused("ftp://x/y.png").contains("https URL"));
        assert!(refused("https://").contains("https URL"));
        let ok = Image::from_url("https://example.com/cat.png?x=1", None, f).unwrap();
        assert_eq!(ok.url(), Some("https://example.com/cat.png?x=1"));
        assert_eq!(ok.decoded_len(), 0);
        assert_eq!(
            MediaType::from_url("https://e.com/a.JPG?x"),
            Some(MediaType::Jpeg)
        );
        assert_eq!(MediaType::from_url("https://e.com/a"), None);
    }

    #[test]
    fn every_format_is_told_by_its_magic_bytes() {
        assert_eq!(
            MediaType::sniff(b"\xFF\xD8\xFF\xE0rest"),
            Some(MediaType::Jpeg)
        );
        assert_eq!(MediaType::sniff(b"GIF89a.."), Some(MediaType::Gif));
        assert_eq!(
            MediaType::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(MediaType::Webp)
        );
        assert_eq!(MediaType::sniff(b"%PDF-1.7"), None);
        let f = "messages[0].content[0].source";
        assert!(Image::from_base64("image/png", PNG_1X1, f).is_ok());
        assert!(Image::from_base64("application/pdf", PNG_1X1, f).is_err());
    }
}
