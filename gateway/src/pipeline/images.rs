//! The limits on a request's images, applied at admission for every wire
//! format: how many (`server.max_images`), how large once decoded
//! (`server.max_image_bytes`), both a 413 naming the field; and which URLs
//! may be sent on (https only, plain http to 127.0.0.1 when
//! `server.image_http_loopback` allows it), a 400 naming the field.

use watershed_policies::ServerSettings;
use watershed_providers::{ChatRequest, ErrorCode};

use crate::error::ApiError;

pub fn check_images(req: &ChatRequest, server: &ServerSettings) -> Result<(), ApiError> {
    let mut count = 0u64;
    for img in req.messages.iter().flat_map(|m| m.images()) {
        count += 1;
        if count > u64::from(server.max_images) {
            return Err(too_large(
                format!(
                    "the request holds more than {} images (server.max_images); \"{}\" is one too many",
                    server.max_images, img.field
                ),
                &img.field,
            ));
        }
        let size = img.decoded_len() as u64;
        if size > server.max_image_bytes {
            return Err(too_large(
                format!(
                    "image \"{}\" is {size} bytes, above the limit of {} (server.max_image_bytes)",
                    img.field, server.max_image_bytes
                ),
                &img.field,
            ));
        }
        if let Some(url) = img.url() {
            let loopback = server.image_http_loopback
                && (url.starts_with("http://127.0.0.1:") || url.starts_with("http://127.0.0.1/"));
            if !url.starts_with("https://") && !loopback {
                return Err(ApiError::bad_request(
                    format!("\"{}\" must be an https URL or a data URI", img.field),
                    Some(&img.field),
                ));
            }
        }
    }
    Ok(())
}

fn too_large(message: String, field: &str) -> ApiError {
    ApiError {
        param: Some(field.to_owned()),
        ..ApiError::new(ErrorCode::PayloadTooLarge, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watershed_providers::openai::parse_chat_request;

    const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

    fn request(urls: &[String]) -> ChatRequest {
        let mut parts = vec![serde_json::json!({"type": "text", "text": "what is this"})];
        parts.extend(
            urls.iter()
                .map(|u| serde_json::json!({"type": "image_url", "image_url": {"url": u}})),
        );
        parse_chat_request(&serde_json::json!({
            "model": "m",
            "messages": [{"role": "user", "content": parts}]
        }))
        .unwrap()
    }

    fn server() -> ServerSettings {
        watershed_policies::load_config(
            "version: 1\nmodels: { local: { engine: local, gguf: m.gguf } }\n\
             routes: [{ name: rest, to: [local] }]\n",
            "t.yaml",
        )
        .unwrap()
        .server
    }

    #[test]
    fn count_size_and_scheme_are_refused_naming_the_field() {
        let mut s = server();
        let png = format!("data:image/png;base64,{PNG}");
        assert!(check_images(&request(&[png.clone(), "https://e.com/a.png".into()]), &s).is_ok());
        s.max_images = 1;
        let e = check_images(&request(&[png.clone(), png.clone()]), &s).unwrap_err();
        assert_eq!(e.code, ErrorCode::PayloadTooLarge);
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].content[2].image_url.url")
        );
        s.max_images = 16;
        s.max_image_bytes = 69;
        let e = check_images(&request(std::slice::from_ref(&png)), &s).unwrap_err();
        assert_eq!(e.code, ErrorCode::PayloadTooLarge);
        assert!(
            e.message.contains("70 bytes, above the limit of 69"),
            "{}",
            e.message
        );
        s.max_image_bytes = 70;
        assert!(check_images(&request(&[png]), &s).is_ok());
        let http = "http://127.0.0.1:9/cat.png".to_owned();
        let e = check_images(&request(std::slice::from_ref(&http)), &s).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].content[1].image_url.url")
        );
        s.image_http_loopback = true;
        assert!(check_images(&request(&[http]), &s).is_ok());
        let other = "http://10.0.0.1/cat.png".to_owned();
        assert!(check_images(&request(&[other]), &s).is_err());
    }
}
