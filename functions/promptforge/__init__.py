"""PromptForge: batch LLM jobs on Google Cloud serverless."""
