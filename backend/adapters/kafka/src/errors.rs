//! librdkafka errors as ringchat errors: broker trouble is `UNAVAILABLE` (retriable), a lost
//! group generation is `CONFLICT` (as the in-process bus says when a commit follows a
//! rebalance), a record over the broker's size limit is `MESSAGE_TOO_LARGE`, a bad
//! configuration is `INTERNAL`.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use ringchat_core::{Error, ErrorCode};

pub(crate) fn from_kafka(what: &str, e: &KafkaError) -> Error {
    use RDKafkaErrorCode as C;
    let code = match e {
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => ErrorCode::Internal,
        _ => match e.rdkafka_error_code() {
            Some(C::MessageSizeTooLarge | C::MessageBatchTooLarge) => ErrorCode::MessageTooLarge,
            Some(
                C::RebalanceInProgress
                | C::IllegalGeneration
                | C::UnknownMemberId
                | C::FencedInstanceId
                | C::FencedMemberEpoch,
            ) => ErrorCode::Conflict,
            Some(C::InvalidTopic | C::InvalidPartitions | C::InvalidReplicationFactor) => {
                ErrorCode::InvalidArgument
            }
            Some(C::Fatal) => ErrorCode::Internal,
            // timeouts, transport failures, leaderless partitions, missing coordinators...
            _ => ErrorCode::Unavailable,
        },
    };
    Error::new(code, format!("kafka: {what}: {e}"))
}

pub(crate) fn timed_out(what: &str, after: std::time::Duration) -> Error {
    Error::unavailable(format!("kafka: {what}: no answer within {after:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_trouble_is_retriable_and_a_lost_generation_is_a_conflict() {
        let timeout = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert_eq!(from_kafka("publish", &timeout).code, ErrorCode::Unavailable);
        let down = KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown);
        assert_eq!(from_kafka("publish", &down).code, ErrorCode::Unavailable);
        let big = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert_eq!(from_kafka("publish", &big).code, ErrorCode::MessageTooLarge);
        let stale = KafkaError::ConsumerCommit(RDKafkaErrorCode::IllegalGeneration);
        assert_eq!(from_kafka("commit", &stale).code, ErrorCode::Conflict);
        let config = KafkaError::ClientCreation("bad".into());
        assert_eq!(from_kafka("connect", &config).code, ErrorCode::Internal);
    }
}
