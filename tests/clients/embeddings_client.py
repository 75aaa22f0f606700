"""A retrieval lesson's first step, as students write it: LangChain's ``OpenAIEmbeddings`` and
the openai SDK (its default base64 encoding and float) against our server's /v1/embeddings."""
import openai
from common import ACCESS_CODE, BASE_URL, report
from langchain_openai import OpenAIEmbeddings

PASSAGES = ["光合作用在叶绿体里进行", "地球绕着太阳转一圈是一年"]
results = {}

# Token ids are OpenAI's own; any other service takes the texts themselves.
lc = OpenAIEmbeddings(model="embedding-3", base_url=BASE_URL, api_key=ACCESS_CODE,
                      check_embedding_ctx_length=False, max_retries=0)
documents = lc.embed_documents(PASSAGES)
results["langchain_documents"] = [len(v) for v in documents]
results["langchain_query"] = len(lc.embed_query("叶绿体"))
results["langchain_same_as_documents"] = lc.embed_query(PASSAGES[0]) == documents[0]

client = openai.OpenAI(base_url=BASE_URL, api_key=ACCESS_CODE, max_retries=0)
b64 = client.embeddings.create(model="embedding-3", input=PASSAGES)
floats = client.embeddings.create(model="embedding-3", input=PASSAGES, encoding_format="float")
results["sdk_dims"] = [len(d.embedding) for d in b64.data]
results["sdk_close"] = max(abs(a - b) for a, b in zip(b64.data[0].embedding, floats.data[0].embedding)) < 1e-6
results["sdk_usage"] = b64.usage.total_tokens

try:
    openai.OpenAI(base_url=BASE_URL, api_key="not-the-code", max_retries=0).embeddings.create(
        model="embedding-3", input="你好")
    results["without_code"] = "answered"
except openai.AuthenticationError as err:
    results["without_code"] = err.status_code
report(results)
