"""The few-shot models and their maths: FRN, its ridge head, ProtoNet, and each method's train step."""
