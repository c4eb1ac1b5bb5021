//! Kafka error codes and their names (`error.type` of a failed operation), as the Apache
//! Kafka 4.4.0 clients define them (org.apache.kafka.common.protocol.Errors).

/// Names of the error codes 0..; `None` for a code that has none.
const NAMES: [Option<&str>; 137] = [
    Some("NONE"),
    Some("OFFSET_OUT_OF_RANGE"),
    Some("CORRUPT_MESSAGE"),
    Some("UNKNOWN_TOPIC_OR_PARTITION"),
    Some("INVALID_FETCH_SIZE"),
    Some("LEADER_NOT_AVAILABLE"),
    Some("NOT_LEADER_OR_FOLLOWER"),
    Some("REQUEST_TIMED_OUT"),
    Some("BROKER_NOT_AVAILABLE"),
    Some("REPLICA_NOT_AVAILABLE"),
    Some("MESSAGE_TOO_LARGE"),
    Some("STALE_CONTROLLER_EPOCH"),
    Some("OFFSET_METADATA_TOO_LARGE"),
    Some("NETWORK_EXCEPTION"),
    Some("COORDINATOR_LOAD_IN_PROGRESS"),
    Some("COORDINATOR_NOT_AVAILABLE"),
    Some("NOT_COORDINATOR"),
    Some("INVALID_TOPIC_EXCEPTION"),
    Some("RECORD_LIST_TOO_LARGE"),
    Some("NOT_ENOUGH_REPLICAS"),
    Some("NOT_ENOUGH_REPLICAS_AFTER_APPEND"),
    Some("INVALID_REQUIRED_ACKS"),
    Some("ILLEGAL_GENERATION"),
    Some("INCONSISTENT_GROUP_PROTOCOL"),
    Some("INVALID_GROUP_ID"),
    Some("UNKNOWN_MEMBER_ID"),
    Some("INVALID_SESSION_TIMEOUT"),
    Some("REBALANCE_IN_PROGRESS"),
    Some("INVALID_COMMIT_OFFSET_SIZE"),
    Some("TOPIC_AUTHORIZATION_FAILED"),
    Some("GROUP_AUTHORIZATION_FAILED"),
    Some("CLUSTER_AUTHORIZATION_FAILED"),
    Some("INVALID_TIMESTAMP"),
    Some("UNSUPPORTED_SASL_MECHANISM"),
    Some("ILLEGAL_SASL_STATE"),
    Some("UNSUPPORTED_VERSION"),
    Some("TOPIC_ALREADY_EXISTS"),
    Some("INVALID_PARTITIONS"),
    Some("INVALID_REPLICATION_FACTOR"),
    Some("INVALID_REPLICA_ASSIGNMENT"),
    Some("INVALID_CONFIG"),
    Some("NOT_CONTROLLER"),
    Some("INVALID_REQUEST"),
    Some("UNSUPPORTED_FOR_MESSAGE_FORMAT"),
    Some("POLICY_VIOLATION"),
    Some("OUT_OF_ORDER_SEQUENCE_NUMBER"),
    Some("DUPLICATE_SEQUENCE_NUMBER"),
    Some("INVALID_PRODUCER_EPOCH"),
    Some("INVALID_TXN_STATE"),
    Some("INVALID_PRODUCER_ID_MAPPING"),
    Some("INVALID_TRANSACTION_TIMEOUT"),
    Some("CONCURRENT_TRANSACTIONS"),
    Some("TRANSACTION_COORDINATOR_FENCED"),
    Some("TRANSACTIONAL_ID_AUTHORIZATION_FAILED"),
    Some("SECURITY_DISABLED"),
    Some("OPERATION_NOT_ATTEMPTED"),
    Some("KAFKA_STORAGE_ERROR"),
    Some("LOG_DIR_NOT_FOUND"),
    Some("SASL_AUTHENTICATION_FAILED"),
    Some("UNKNOWN_PRODUCER_ID"),
    Some("REASSIGNMENT_IN_PROGRESS"),
    Some("DELEGATION_TOKEN_AUTH_DISABLED"),
    Some("DELEGATION_TOKEN_NOT_FOUND"),
    Some("DELEGATION_TOKEN_OWNER_MISMATCH"),
    Some("DELEGATION_TOKEN_REQUEST_NOT_ALLOWED"),
    Some("DELEGATION_TOKEN_AUTHORIZATION_FAILED"),
    Some("DELEGATION_TOKEN_EXPIRED"),
    Some("INVALID_PRINCIPAL_TYPE"),
    Some("NON_EMPTY_GROUP"),
    Some("GROUP_ID_NOT_FOUND"),
    Some("FETCH_SESSION_ID_NOT_FOUND"),
    Some("INVALID_FETCH_SESSION_EPOCH"),
    Some("LISTENER_NOT_FOUND"),
    Some("TOPIC_DELETION_DISABLED"),
    Some("FENCED_LEADER_EPOCH"),
    Some("UNKNOWN_LEADER_EPOCH"),
    Some("UNSUPPORTED_COMPRESSION_TYPE"),
    Some("STALE_BROKER_EPOCH"),
    Some("OFFSET_NOT_AVAILABLE"),
    Some("MEMBER_ID_REQUIRED"),
    Some("PREFERRED_LEADER_NOT_AVAILABLE"),
    Some("GROUP_MAX_SIZE_REACHED"),
    Some("FENCED_INSTANCE_ID"),
    Some("ELIGIBLE_LEADERS_NOT_AVAILABLE"),
    Some("ELECTION_NOT_NEEDED"),
    Some("NO_REASSIGNMENT_IN_PROGRESS"),
    Some("GROUP_SUBSCRIBED_TO_TOPIC"),
    Some("INVALID_RECORD"),
    Some("UNSTABLE_OFFSET_COMMIT"),
    Some("THROTTLING_QUOTA_EXCEEDED"),
    Some("PRODUCER_FENCED"),
    Some("RESOURCE_NOT_FOUND"),
    Some("DUPLICATE_RESOURCE"),
    Some("UNACCEPTABLE_CREDENTIAL"),
    Some("INCONSISTENT_VOTER_SET"),
    Some("INVALID_UPDATE_VERSION"),
    Some("FEATURE_UPDATE_FAILED"),
    Some("PRINCIPAL_DESERIALIZATION_FAILURE"),
    Some("SNAPSHOT_NOT_FOUND"),
    Some("POSITION_OUT_OF_RANGE"),
    Some("UNKNOWN_TOPIC_ID"),
    Some("DUPLICATE_BROKER_REGISTRATION"),
    Some("BROKER_ID_NOT_REGISTERED"),
    Some("INCONSISTENT_TOPIC_ID"),
    Some("INCONSISTENT_CLUSTER_ID"),
    Some("TRANSACTIONAL_ID_NOT_FOUND"),
    Some("FETCH_SESSION_TOPIC_ID_ERROR"),
    Some("INELIGIBLE_REPLICA"),
    Some("NEW_LEADER_ELECTED"),
    Some("OFFSET_MOVED_TO_TIERED_STORAGE"),
    Some("FENCED_MEMBER_EPOCH"),
    Some("UNRELEASED_INSTANCE_ID"),
    Some("UNSUPPORTED_ASSIGNOR"),
    Some("STALE_MEMBER_EPOCH"),
    Some("MISMATCHED_ENDPOINT_TYPE"),
    Some("UNSUPPORTED_ENDPOINT_TYPE"),
    Some("UNKNOWN_CONTROLLER_ID"),
    Some("UNKNOWN_SUBSCRIPTION_ID"),
    Some("TELEMETRY_TOO_LARGE"),
    Some("INVALID_REGISTRATION"),
    Some("TRANSACTION_ABORTABLE"),
    Some("INVALID_RECORD_STATE"),
    Some("SHARE_SESSION_NOT_FOUND"),
    Some("INVALID_SHARE_SESSION_EPOCH"),
    Some("FENCED_STATE_EPOCH"),
    Some("INVALID_VOTER_KEY"),
    Some("DUPLICATE_VOTER"),
    Some("VOTER_NOT_FOUND"),
    Some("INVALID_REGULAR_EXPRESSION"),
    Some("REBOOTSTRAP_REQUIRED"),
    Some("STREAMS_INVALID_TOPOLOGY"),
    Some("STREAMS_INVALID_TOPOLOGY_EPOCH"),
    Some("STREAMS_TOPOLOGY_FENCED"),
    Some("SHARE_SESSION_LIMIT_REACHED"),
    Some("GROUP_DELETION_FAILED"),
    Some("STREAMS_TOPOLOGY_DESCRIPTION_UPDATE_FAILED"),
    Some("CONTROLLER_ID_NOT_REGISTERED"),
];

/// The name of a Kafka error code; a code this table does not know is named by its number
/// (`UNKNOWN_ERROR_CODE_<n>` is never invented: the number is what is known).
pub fn name(code: i16) -> String {
    if code == -1 {
        return "UNKNOWN_SERVER_ERROR".to_string();
    }
    match usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .flatten()
    {
        Some(n) => n.to_string(),
        None => code.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_codes() {
        assert_eq!(name(0), "NONE");
        assert_eq!(name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(name(100), "UNKNOWN_TOPIC_ID");
        assert_eq!(name(30000), "30000");
        assert_eq!(name(-7), "-7");
    }
}
