package router

// Functions the classifier knows without asking the server.
//
// funcWrites: functions that write, take locks, assign a transaction id, or only work
// on a primary; a query calling one goes to the primary.
// funcReads: builtins that are safe on a replica, including volatile ones that do not
// write (random(), clock_timestamp(), pg_sleep(), gen_random_uuid()).
// Any other function is looked up in pg_proc (see Volatility): volatile ones send the
// query to the primary.

const (
	funcUnknown = iota
	funcReads
	funcWrites
)

func funcClass(name string) int {
	if writeFuncs[name] {
		return funcWrites
	}
	if readFuncs[name] {
		return funcReads
	}
	return funcUnknown
}

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

var writeFuncs = set(
	"nextval", "setval", "currval", "lastval", "setseed",
	"pg_advisory_lock", "pg_advisory_lock_shared", "pg_advisory_xact_lock", "pg_advisory_xact_lock_shared",
	"pg_try_advisory_lock", "pg_try_advisory_lock_shared", "pg_try_advisory_xact_lock", "pg_try_advisory_xact_lock_shared",
	"pg_advisory_unlock", "pg_advisory_unlock_shared", "pg_advisory_unlock_all",
	"txid_current", "pg_current_xact_id", "set_config", "pg_notify",
	"lo_create", "lo_creat", "lo_import", "lo_export", "lo_unlink", "lo_open", "lo_put", "lo_from_bytea", "lo_truncate", "lowrite",
	"pg_current_wal_lsn", "pg_current_wal_insert_lsn", "pg_current_wal_flush_lsn", "pg_switch_wal", "pg_create_restore_point",
	"pg_logical_emit_message", "pg_create_physical_replication_slot", "pg_create_logical_replication_slot",
	"pg_drop_replication_slot", "pg_replication_origin_create", "pg_replication_origin_drop",
	"pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
	"pg_stat_reset", "pg_stat_reset_shared", "pg_stat_reset_single_table_counters", "pg_stat_reset_single_function_counters",
	"pg_import_system_collations", "dblink_exec", "pg_prewarm",
)

var readFuncs = set(
	// volatile, but read-only
	"random", "random_normal", "clock_timestamp", "timeofday", "statement_timestamp", "transaction_timestamp",
	"pg_sleep", "pg_sleep_for", "pg_sleep_until", "gen_random_uuid", "uuid_generate_v4", "txid_current_if_assigned",
	"pg_current_xact_id_if_assigned", "pg_backend_pid",
	// stable and immutable builtins common in application queries
	"now", "current_setting", "inet_server_port", "inet_server_addr", "inet_client_addr", "inet_client_port", "version",
	"pg_is_in_recovery", "pg_last_wal_replay_lsn", "pg_last_wal_receive_lsn", "pg_last_xact_replay_timestamp",
	"current_database", "current_schema", "current_schemas", "pg_postmaster_start_time",
	"count", "sum", "avg", "min", "max", "array_agg", "string_agg", "json_agg", "jsonb_agg", "json_object_agg",
	"jsonb_object_agg", "bool_and", "bool_or", "every", "bit_and", "bit_or", "stddev", "stddev_pop", "stddev_samp",
	"variance", "var_pop", "var_samp", "percentile_cont", "percentile_disc", "mode", "corr", "covar_pop", "covar_samp",
	"row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead", "first_value",
	"last_value", "nth_value",
	"lower", "upper", "length", "char_length", "character_length", "octet_length", "substr", "substring", "concat",
	"concat_ws", "format", "replace", "split_part", "trim", "btrim", "ltrim", "rtrim", "lpad", "rpad", "left", "right",
	"position", "strpos", "starts_with", "reverse", "repeat", "initcap", "md5", "sha256", "encode", "decode",
	"quote_ident", "quote_literal", "quote_nullable", "regexp_replace", "regexp_matches", "regexp_match",
	"regexp_split_to_array", "regexp_split_to_table", "translate", "ascii", "chr", "to_hex",
	"to_char", "to_date", "to_timestamp", "to_number", "date_trunc", "date_part", "extract", "age", "make_date",
	"make_time", "make_timestamp", "make_timestamptz", "make_interval", "justify_days", "justify_hours",
	"justify_interval", "isfinite", "date_bin",
	"abs", "round", "floor", "ceil", "ceiling", "trunc", "mod", "sign", "sqrt", "cbrt", "exp", "ln", "log", "log10",
	"power", "pow", "pi", "degrees", "radians", "div", "width_bucket", "gcd", "lcm",
	"generate_series", "generate_subscripts", "unnest", "array_length", "array_lower", "array_upper", "cardinality",
	"array_to_string", "string_to_array", "array_position", "array_positions", "array_remove", "array_replace",
	"array_append", "array_prepend", "array_cat", "array_dims", "array_ndims",
	"to_json", "to_jsonb", "row_to_json", "json_build_object", "jsonb_build_object", "json_build_array",
	"jsonb_build_array", "json_object", "jsonb_object", "json_extract_path", "json_extract_path_text",
	"jsonb_extract_path", "jsonb_extract_path_text", "jsonb_set", "jsonb_insert", "jsonb_pretty",
	"json_array_length", "jsonb_array_length", "json_each", "jsonb_each", "json_each_text", "jsonb_each_text",
	"json_array_elements", "jsonb_array_elements", "json_array_elements_text", "jsonb_array_elements_text",
	"jsonb_path_query", "jsonb_path_exists", "jsonb_path_match", "json_typeof", "jsonb_typeof", "jsonb_strip_nulls",
	"pg_typeof", "format_type", "pg_get_userbyid", "pg_get_expr", "pg_get_indexdef", "pg_get_constraintdef",
	"pg_get_viewdef", "pg_get_functiondef", "obj_description", "col_description", "pg_table_is_visible",
	"pg_relation_size", "pg_total_relation_size", "pg_table_size", "pg_indexes_size", "pg_database_size",
	"pg_size_pretty", "has_table_privilege", "has_schema_privilege", "has_database_privilege",
	"has_column_privilege", "has_function_privilege", "pg_has_role", "to_regclass", "to_regtype",
	"pg_encoding_to_char", "pg_column_size", "host", "text", "inet", "numeric", "float8", "int4", "int8",
	"nullif", "coalesce", "greatest", "least", "similarity", "word_similarity", "ts_rank", "to_tsvector",
	"to_tsquery", "plainto_tsquery", "websearch_to_tsquery", "phraseto_tsquery", "ts_headline",
	"st_distance", "st_dwithin", "st_contains", "st_intersects", "st_asgeojson", "st_makepoint", "st_setsrid",
)
