import pytest
from labeling.importing import project_import, ImportFailed
from tests.factories import ProjectFactory
@pytest.mark.django_db
@pytest.mark.parametrize("data,name", [(b"\xef\xbb\xbf","d.jsonl"),(b"\xef\xbb\xbf\r\n\r\n","d.csv"),(b",,\n,,\n","d.csv")])
def test_x(data,name):
    p=ProjectFactory()
    with pytest.raises(ImportFailed) as e:
        project_import(project=p, filename=name, data=data)
    print(repr(e.value.errors))
