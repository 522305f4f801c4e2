//! What the host prints while serving: one line per request, the guests'
//! output labelled with their component, and denied outbound attempts.

use std::io::Write;
use std::time::Duration;

/// `POST /api/vouchers/1/orders -> buy-voucher 201 3.2ms redis=2`: redis is
/// the number of Redis commands (round trips) the component had sent when
/// its response began.
pub fn request(
    method: &str,
    path: &str,
    component: &str,
    status: u16,
    elapsed: Duration,
    redis: u32,
) {
    println!(
        "{method} {path} -> {component} {status} {:.1}ms redis={redis}",
        elapsed.as_secs_f64() * 1000.0
    );
}

pub fn guest_output(component: &str, bytes: &[u8], is_stderr: bool) {
    if bytes.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    let mut buf = String::with_capacity(text.len() + 32);
    for line in text.lines() {
        buf.push_str(&format!("[{component}] {line}\n"));
    }
    if is_stderr {
        let _ = std::io::stderr().lock().write_all(buf.as_bytes());
    } else {
        let _ = std::io::stdout().lock().write_all(buf.as_bytes());
    }
}

pub fn denied(component: &str, what: &str, target: &str) {
    let target = without_credentials(target);
    eprintln!(
        "[{component}] {what} access to {target} denied: not in the component's allowed_outbound_hosts"
    );
}

/// `redis://user:secret@host` becomes `redis://host`: passwords stay out of
/// logs.
pub fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() || !parsed.username().is_empty() => {
            let _ = parsed.set_password(None);
            let _ = parsed.set_username("");
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_credentials;

    #[test]
    fn credentials_are_removed() {
        assert_eq!(without_credentials("redis://:pw@h:1"), "redis://h:1");
        assert_eq!(without_credentials("redis://u:pw@h:1/0"), "redis://h:1/0");
        assert_eq!(without_credentials("http://h/x"), "http://h/x");
    }
}
