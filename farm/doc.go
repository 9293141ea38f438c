// Package farm is Croft's neutral farm model: the vocabulary and rules
// shared by the FSM, the service layer, the dialects and the agent.
package farm
