//! The token `[server]` points to.

use super::ServerError;
use crate::config::server::ServerSettings;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Reads the token from `token_env`, else `token_file`. `None` when
/// neither is set; an error when one is set but holds no token.
pub(crate) fn load_token(settings: &ServerSettings) -> Result<Option<Token>, ServerError> {
    Ok(token_text(settings)?.map(|text| Token::new(&text)))
}

/// The token itself, read as [`load_token`] does: what a client of
/// this server (`runner ask` handing off its work) identifies with.
pub fn token_text(settings: &ServerSettings) -> Result<Option<String>, ServerError> {
    if let Some(var) = &settings.token_env {
        match std::env::var(var) {
            Ok(value) if !value.trim().is_empty() => return Ok(Some(value.trim().to_string())),
            _ if settings.token_file.is_some() => {}
            _ => {
                return Err(ServerError::Token(format!(
                    "[server] token_env names `{var}`, but that environment variable is not set or empty"
                )));
            }
        }
    }
    if let Some(file) = &settings.token_file {
        let text = std::fs::read_to_string(file).map_err(|err| {
            ServerError::Token(format!(
                "[server] token_file: cannot read {}: {err}",
                file.display()
            ))
        })?;
        if text.trim().is_empty() {
            return Err(ServerError::Token(format!(
                "[server] token_file: {} is empty",
                file.display()
            )));
        }
        return Ok(Some(text.trim().to_string()));
    }
    Ok(None)
}

/// The token, kept only as its SHA-256 so that comparing takes the same
/// time whatever the length or content of the guess.
#[derive(Clone)]
pub(crate) struct Token([u8; 32]);

impl Token {
    pub(crate) fn new(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    pub(crate) fn matches(&self, guess: &str) -> bool {
        let guess: [u8; 32] = Sha256::digest(guess.as_bytes()).into();
        self.0.ct_eq(&guess).into()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_only_itself() {
        let token = Token::new("s3cret");
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cre"));
        assert!(!token.matches(""));
        assert!(!format!("{token:?}").contains("s3cret"));
    }
}
