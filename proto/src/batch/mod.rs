//! Record batches: Kafka RecordBatch v2 layout, builder, validator and record iterator.
