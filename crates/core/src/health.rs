//! The health check: one round trip proving Redis answers.

use crate::redis::{Redis, RedisError, Reply};

/// Sends `PING` and expects `PONG`.
pub async fn check(redis: &mut impl Redis) -> Result<(), RedisError> {
    match redis.execute_replayable("PING", &[]).await?.as_slice() {
        [Reply::Status(s)] if s == "PONG" => Ok(()),
        other => Err(RedisError::UnexpectedReply(format!(
            "PING answered {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::Arg;
    use flashspin_testkit::block_on;

    struct Canned(Result<Vec<Reply>, RedisError>);

    impl Redis for Canned {
        async fn execute(
            &mut self,
            command: &str,
            _: &[Arg<'_>],
        ) -> Result<Vec<Reply>, RedisError> {
            assert_eq!(command, "PING");
            self.0.clone()
        }
    }

    #[test]
    fn pong_is_healthy_anything_else_is_not() {
        assert!(block_on(check(&mut Canned(Ok(vec![Reply::Status("PONG".into())])))).is_ok());
        assert!(block_on(check(&mut Canned(Ok(vec![Reply::Nil])))).is_err());
        let down = RedisError::Unreachable("refused".into());
        assert_eq!(block_on(check(&mut Canned(Err(down.clone())))), Err(down));
    }
}
